set title 'validation bits per byte against the recurrent state'
set xlabel 'state floats per sequence'
set ylabel 'validation bits per byte'
set grid
set key outside right
set offsets graph 0.04, graph 0.04, graph 0.02, graph 0.02
set logscale x 2
set terminal svg size 900,520 dynamic noenhanced font 'sans,11'
set output 'metric_vs_state.svg'
plot 'metric_vs_state.dat' index 0 using 1:2:3:4 with yerrorlines title 'cell=gru K views at width 64', 'metric_vs_state.dat' index 1 using 1:2:3:4 with yerrorlines title 'cell=lstm K views at width 64', 'metric_vs_state.dat' index 2 using 1:2:3:4 with yerrorlines title 'cell=rwkv K views at width 64', 'metric_vs_state.dat' index 3 using 1:2:3:4 with yerrorlines title 'cell=ssm K views at width 64'
set terminal pngcairo size 900,520 noenhanced font 'sans,10'
set output 'metric_vs_state.png'
replot
