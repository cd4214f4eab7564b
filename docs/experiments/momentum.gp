# momentum: bn_experiments momentum --load reference_cnn.safetensors --threads 2 --out docs/experiments
# Render with: gnuplot momentum.gp (in this folder)
if (!exists("output")) output = 'momentum.png'
set terminal pngcairo size 900,540 noenhanced font ',10'
set output output
set datafile separator ','
set key autotitle columnhead
set grid
set multiplot layout 1,2 title 'Running statistics of BatchNorm "5" against the data set''s (batch 64)'
set logscale y
set xlabel 'step'
set format y '%g'
set key bottom left
set ylabel 'RMS over channels of running_mean - true mean'
plot 'momentum.csv' using 1:2 with lines lw 2 title 'momentum 0.01', 'momentum.csv' using 1:3 with lines lw 2 title 'momentum 0.1', 'momentum.csv' using 1:4 with lines lw 2 title 'momentum 0.5', 'momentum.csv' using 1:5 with lines lw 2 title 'cumulative average'
set ylabel 'RMS over channels of running_var - true variance'
plot 'momentum.csv' using 1:6 with lines lw 2 title 'momentum 0.01', 'momentum.csv' using 1:7 with lines lw 2 title 'momentum 0.1', 'momentum.csv' using 1:8 with lines lw 2 title 'momentum 0.5', 'momentum.csv' using 1:9 with lines lw 2 title 'cumulative average'
unset multiplot
