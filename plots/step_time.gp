# Where a step's time goes: compute, and the communication it could not hide (time blocked
# waiting, by class). Medians over the steady steps. With the simulator beside the run
# (has_prediction), a black diamond per arm: the step time `wancp sim` predicted.
load plots_dir."/style.gp"
set title sprintf("%s: step time, compute vs exposed communication\n{/*0.8 medians over the steady steps; %s}", run_name, run_mode)
set ylabel "seconds per step"
set yrange [0:*]
set style data histograms
set style histogram rowstacked
set style fill solid 0.85 border -1
set boxwidth 0.6
set xtics noenhanced
set key top right
set offsets 0, 0, graph 0.4, 0
do for [fmt in "png svg"] {
    eval (fmt eq "png" ? output_png("step_time") : output_svg("step_time"))
    if (has_prediction) {
        plot data_dir."/time.dat" using 2:xtic(1) title "compute", \
             '' using 3 title "waiting for K/V (forward)", \
             '' using 4 title "waiting for K/V gradients (backward)", \
             '' using 5 title "waiting for weight sync and control", \
             '' using 0:6 with points pt 13 ps 2 lc rgb "black" title "predicted step (wancp sim)"
    } else {
        plot data_dir."/time.dat" using 2:xtic(1) title "compute", \
             '' using 3 title "waiting for K/V (forward)", \
             '' using 4 title "waiting for K/V gradients (backward)", \
             '' using 5 title "waiting for weight sync and control"
    }
}
