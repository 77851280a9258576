# Bytes rank 0 sends per training step, by traffic class: the app counters next to the K/V
# bytes the packet capture saw on the wire (log scale: compression moves them by ~30x).
load plots_dir."/style.gp"
set title sprintf("%s: bytes rank 0 sends per training step\n{/*0.8 K/V: median over the steady steps; weight sync: mean over the run; %s}", run_name, run_mode)
set ylabel "MB per step (log scale)"
set logscale y
set yrange [0.001:*]
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set xtics noenhanced
set key top right
do for [fmt in "png svg"] {
    eval (fmt eq "png" ? output_png("bytes_per_step") : output_svg("bytes_per_step"))
    plot data_dir."/bytes.dat" using 2:xtic(1) title "K/V forward (app)", \
         '' using 3 title "K/V backward (app)", \
         '' using 4 title "K/V on the wire (pcap, whole frames)", \
         '' using 5 title "weight sync (app)"
}
