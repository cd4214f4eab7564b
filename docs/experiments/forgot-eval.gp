# forgot-eval: bn_experiments forgot-eval --load reference_cnn.safetensors --threads 2 --out docs/experiments
# Render with: gnuplot forgot-eval.gp (in this folder)
if (!exists("output")) output = 'forgot-eval.png'
set terminal pngcairo size 900,540 noenhanced font ',10'
set output output
set datafile separator ','
set key autotitle columnhead
set grid
set title 'Evaluating without model.eval(): the loop, and a proper evaluation after it'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set yrange [80:100]
set ylabel 'test accuracy (%)'
set xlabel 'order of the test set, batch size'
set key below
set grid noxtics
plot 'forgot-eval.csv' using ($3*100):xtic(sprintf('%s, %d', strcol(1), int($2))) title 'with model.eval()', \
     '' using ($4*100) title 'forgot model.eval()', \
     '' using ($5*100) title 'model.eval() afterwards, with the running statistics the forgetful loop left'
