set title 'validation accuracy per query group'
set xlabel ''
set ylabel 'accuracy'
set grid
set key outside right
set offsets graph 0.04, graph 0.04, graph 0.02, graph 0.02
set xtics ('lag 2' 0, 'lag 8' 1, 'lag 32' 2, 'lag 128' 3)
set yrange [0:1]
set terminal svg size 900,520 dynamic noenhanced font 'sans,11'
set output 'accuracy_per_group.svg'
plot 'accuracy_per_group.dat' index 0 using 1:2:3:4 with yerrorlines title 'cell=gru perspectives=1', 'accuracy_per_group.dat' index 1 using 1:2:3:4 with yerrorlines title 'cell=gru perspectives=3', 'accuracy_per_group.dat' index 2 using 1:2:3:4 with yerrorlines title 'cell=lstm perspectives=1', 'accuracy_per_group.dat' index 3 using 1:2:3:4 with yerrorlines title 'cell=lstm perspectives=3', 'accuracy_per_group.dat' index 4 using 1:2:3:4 with yerrorlines title 'cell=rwkv perspectives=1', 'accuracy_per_group.dat' index 5 using 1:2:3:4 with yerrorlines title 'cell=rwkv perspectives=3', 'accuracy_per_group.dat' index 6 using 1:2:3:4 with yerrorlines title 'cell=ssm perspectives=1', 'accuracy_per_group.dat' index 7 using 1:2:3:4 with yerrorlines title 'cell=ssm perspectives=3'
set terminal pngcairo size 900,520 noenhanced font 'sans,10'
set output 'accuracy_per_group.png'
replot
