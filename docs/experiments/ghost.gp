# ghost: bn_experiments ghost --threads 2 --out docs/experiments
# Render with: gnuplot ghost.gp (in this folder)
if (!exists("output")) output = 'ghost.png'
set terminal pngcairo size 900,540 noenhanced font ',10'
set output output
set datafile separator ','
set key autotitle columnhead
set grid
set multiplot layout 1,2 title 'Batch 512, SGD lr 0.0282843 momentum 0.9: plain BatchNorm against ghost batches of 32'
set xlabel 'epoch'
set xtics 1
set xrange [0.5:5.5]
set ylabel 'test accuracy (%)'
set key bottom right
plot 'ghost.csv' using 1:($4*100) with linespoints lw 2 pt 7 title 'plain', \
     '' using 1:($5*100) with linespoints lw 2 pt 5 title 'ghost 32'
set ylabel 'training loss'
set key top right
plot 'ghost.csv' using 1:2 with linespoints lw 2 pt 7 title 'plain', \
     '' using 1:3 with linespoints lw 2 pt 5 title 'ghost 32'
unset multiplot
