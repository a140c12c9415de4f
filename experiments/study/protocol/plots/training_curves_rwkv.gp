set title 'training loss (mean over seeds) (cell=rwkv)'
set xlabel 'step'
set ylabel 'training loss'
set grid
set key outside right
set offsets graph 0.04, graph 0.04, graph 0.02, graph 0.02
set terminal svg size 900,520 dynamic noenhanced font 'sans,11'
set output 'training_curves_rwkv.svg'
plot 'training_curves_rwkv.dat' index 0 using 1:2 with linespoints title 'perspectives=1 combine=layer per_perspective=decay', 'training_curves_rwkv.dat' index 1 using 1:2 with linespoints title 'perspectives=3 combine=layer per_perspective=decay', 'training_curves_rwkv.dat' index 2 using 1:2 with linespoints title 'perspectives=3 combine=head per_perspective=shift'
set terminal pngcairo size 900,520 noenhanced font 'sans,10'
set output 'training_curves_rwkv.png'
replot
