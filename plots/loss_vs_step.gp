# Training loss (every step) and validation loss (points) against the step: what each arm
# learns per step, apart from how fast its steps are.
load plots_dir."/style.gp"
set xlabel "optimizer step"
set ylabel "loss (nats per token)"
set title sprintf("%s: loss vs step\n{/*0.8 lines: training loss, points: validation loss; %s}", run_name, run_mode)
do for [fmt in "png svg"] {
    eval (fmt eq "png" ? output_png("loss_vs_step") : output_svg("loss_vs_step"))
    plot for [i=1:narms] arm_data[i].".steps" using 1:3 with lines ls i lw 1 title arm_title[i] noenhanced, \
         for [i=1:narms] arm_data[i].".val" using 1:3 with points ls i pt 7 ps 1 notitle
}
