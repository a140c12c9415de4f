set title 'validation bits per byte during training (cell=lstm)'
set xlabel 'step'
set ylabel 'validation bits per byte'
set grid
set key outside right
set offsets graph 0.04, graph 0.04, graph 0.02, graph 0.02
set terminal svg size 900,520 dynamic noenhanced font 'sans,11'
set output 'validation_curves_lstm.svg'
plot 'validation_curves_lstm.dat' index 0 using 1:2:3:4 with yerrorlines title 'perspectives=1', 'validation_curves_lstm.dat' index 1 using 1:2:3:4 with yerrorlines title 'perspectives=3'
set terminal pngcairo size 900,520 noenhanced font 'sans,10'
set output 'validation_curves_lstm.png'
replot
