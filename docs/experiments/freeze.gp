# freeze: bn_experiments freeze --load reference_cnn.safetensors --threads 2 --out docs/experiments
# Render with: gnuplot freeze.gp (in this folder)
if (!exists("output")) output = 'freeze.png'
set terminal pngcairo size 900,540 noenhanced font ',10'
set output output
set datafile separator ','
set key autotitle columnhead
set grid
set title 'Fine-tuning on the negative images, batch 8, SGD lr 0.01 momentum 0.9'
set xlabel 'fine-tuning step'
set ylabel 'test accuracy on the negatives (%)'
set key bottom right
plot 'freeze.csv' using 1:($2*100) with linespoints lw 2 pt 7 title 'unfrozen BatchNorm', \
     '' using 1:($3*100) with linespoints lw 2 pt 5 title 'statistics frozen (FREEZE_STATS)', \
     '' using 1:($4*100) with linespoints lw 2 pt 9 title 'all frozen (FREEZE_ALL, FrozenBatchNorm2d)'
