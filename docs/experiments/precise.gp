# precise: bn_experiments precise --load reference_cnn.safetensors --threads 2 --out docs/experiments
# Render with: gnuplot precise.gp (in this folder)
if (!exists("output")) output = 'precise.png'
set terminal pngcairo size 900,540 noenhanced font ',10'
set output output
set datafile separator ','
set key autotitle columnhead
set grid
set title 'Precise BatchNorm: running statistics recomputed from N training batches of 64'
set logscale x
set xlabel 'training batches averaged (optim_update_bn)'
set ylabel 'test accuracy (%)'
set key bottom right
plot 'precise.csv' using 1:($3*100) with linespoints lw 2 pt 7 title 'precise statistics', \
     '' using 1:($4*100) with lines lw 2 dt 2 title 'running statistics from training (momentum 0.1)'
