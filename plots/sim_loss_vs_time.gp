# Loss of a real run against the wall-clock each arm would take (wancp sim --loss): the
# losses per step come from one run, the time of each step from the simulator.
load plots_dir."/style.gp"
set xlabel "projected training time (s)"
set ylabel "validation loss (nats per token)"
set title sprintf("%s: validation loss vs projected time\n{/*0.8 %s%s}", run_name, run_mode, target == target ? sprintf("; dashed: target %.3f", target) : "")
if (target == target) { set arrow 1 from graph 0, first target to graph 1, first target nohead dt 2 lc rgb "#888888" }
do for [fmt in "png svg"] {
    eval (fmt eq "png" ? output_png("sim_loss_vs_time") : output_svg("sim_loss_vs_time"))
    plot for [i=1:narms] arm_data[i] using 2:($4 == $4 ? $4 : 1/0) with linespoints title arm_title[i] noenhanced
}
