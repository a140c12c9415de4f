set title 'validation gain in accuracy per query group over the control (P1) (cell=ssm)'
set xlabel ''
set ylabel 'accuracy difference'
set grid
set key outside right
set offsets graph 0.04, graph 0.04, graph 0.02, graph 0.02
set xtics ('lag 4' 0, 'lag 8' 1, 'lag 16' 2, 'lag 32' 3)
set xzeroaxis
set terminal svg size 900,520 dynamic noenhanced font 'sans,11'
set output 'gain_per_group_ssm.svg'
plot 'gain_per_group_ssm.dat' index 0 using 1:2:3:4 with yerrorlines title 'cell=ssm perspectives=3 vs cell=ssm perspectives=1'
set terminal pngcairo size 900,520 noenhanced font 'sans,10'
set output 'gain_per_group_ssm.png'
replot
