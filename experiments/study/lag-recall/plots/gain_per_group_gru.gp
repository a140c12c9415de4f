set title 'validation gain in accuracy per query group over the control (H1) (cell=gru)'
set xlabel ''
set ylabel 'accuracy difference'
set grid
set key outside right
set offsets graph 0.04, graph 0.04, graph 0.02, graph 0.02
set xtics ('lag 4' 0, 'lag 8' 1, 'lag 16' 2, 'lag 32' 3)
set xzeroaxis
set terminal svg size 900,520 dynamic noenhanced font 'sans,11'
set output 'gain_per_group_gru.svg'
plot 'gain_per_group_gru.dat' index 0 using 1:2:3:4 with yerrorlines title 'perspectives=2 vs perspectives=1', 'gain_per_group_gru.dat' index 1 using 1:2:3:4 with yerrorlines title 'perspectives=3 vs perspectives=1', 'gain_per_group_gru.dat' index 2 using 1:2:3:4 with yerrorlines title 'perspectives=4 vs perspectives=1'
set terminal pngcairo size 900,520 noenhanced font 'sans,10'
set output 'gain_per_group_gru.png'
replot
