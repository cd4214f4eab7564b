# no-tracking: bn_experiments no-tracking --load reference_cnn.safetensors --threads 2 --out docs/experiments
# Render with: gnuplot no-tracking.gp (in this folder)
if (!exists("output")) output = 'no-tracking.png'
set terminal pngcairo size 900,540 noenhanced font ',10'
set output output
set datafile separator ','
set key autotitle columnhead
set grid
set title 'Eval mode with track_running_stats=False: batch statistics at test time'
set logscale x 2
set xlabel 'batch size at test time'
set ylabel 'test accuracy (%)'
set y2label 'predictions changed by shuffling the test set (%)'
set y2tics
set ytics nomirror
set key center right
plot 'no-tracking.csv' using 1:($2*100) with linespoints lw 2 pt 5 title 'track_running_stats=True', \
     '' using 1:($3*100) with linespoints lw 2 pt 7 title 'track_running_stats=False', \
     '' using 1:($5*100) axes x1y2 with linespoints lw 2 dt 2 pt 6 title 'False: predictions changed by shuffling'
