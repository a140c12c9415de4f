set title 'training loss (mean over seeds) (cell=ssm)'
set xlabel 'step'
set ylabel 'training loss'
set grid
set key outside right
set offsets graph 0.04, graph 0.04, graph 0.02, graph 0.02
set terminal svg size 900,520 dynamic noenhanced font 'sans,11'
set output 'training_curves_ssm.svg'
plot 'training_curves_ssm.dat' index 0 using 1:2 with linespoints title 'perspectives=1', 'training_curves_ssm.dat' index 1 using 1:2 with linespoints title 'perspectives=3'
set terminal pngcairo size 900,520 noenhanced font 'sans,10'
set output 'training_curves_ssm.png'
replot
