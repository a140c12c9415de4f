set title 'validation bits per byte against K (cell=rwkv)'
set xlabel 'perspectives K'
set ylabel 'validation bits per byte'
set grid
set key outside right
set offsets graph 0.04, graph 0.04, graph 0.02, graph 0.02
set xtics 1
set terminal svg size 900,520 dynamic noenhanced font 'sans,11'
set output 'metric_vs_k_rwkv.svg'
plot 'metric_vs_k_rwkv.dat' index 0 using 1:2:3:4 with yerrorlines title 'cell=rwkv combine=layer per_perspective=decay'
set terminal pngcairo size 900,520 noenhanced font 'sans,10'
set output 'metric_vs_k_rwkv.png'
replot
