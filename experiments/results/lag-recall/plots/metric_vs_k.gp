set title 'validation accuracy against the number of perspectives'
set xlabel 'perspectives K'
set ylabel 'validation accuracy'
set grid
set key outside right
set offsets graph 0.04, graph 0.04, graph 0.02, graph 0.02
set xtics 1
set terminal svg size 900,520 dynamic noenhanced font 'sans,11'
set output 'metric_vs_k.svg'
plot 'metric_vs_k.dat' index 0 using 1:2:3:4 with yerrorlines title 'cell=gru', 'metric_vs_k.dat' index 1 using 1:2:3:4 with yerrorlines title 'cell=lstm', 'metric_vs_k.dat' index 2 using 1:2:3:4 with yerrorlines title 'cell=rwkv', 'metric_vs_k.dat' index 3 using 1:2:3:4 with yerrorlines title 'cell=ssm'
set terminal pngcairo size 900,520 noenhanced font 'sans,10'
set output 'metric_vs_k.png'
replot
