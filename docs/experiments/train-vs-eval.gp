# train-vs-eval: bn_experiments train-vs-eval --load reference_cnn.safetensors --threads 2 --out docs/experiments
# Render with: gnuplot train-vs-eval.gp (in this folder)
if (!exists("output")) output = 'train-vs-eval.png'
set terminal pngcairo size 900,540 noenhanced font ',10'
set output output
set datafile separator ','
set key autotitle columnhead
set grid
set title 'Test accuracy with batch statistics (training mode) and running statistics (eval mode)'
set logscale x 2
set xlabel 'batch size'
set ylabel 'test accuracy (%)'
set key bottom right
plot 'train-vs-eval.csv' using 1:($2*100) with linespoints lw 2 pt 7 title 'training mode: batch statistics', \
     '' using 1:($3*100) with linespoints lw 2 pt 5 title 'eval mode: running statistics'
