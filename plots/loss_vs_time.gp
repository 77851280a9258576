# Validation loss against training time, every arm: the paper's Figure 2.
load plots_dir."/style.gp"
set xlabel sprintf("training time (s%s)", run_mode[1:7] eq "dilated" ? ", divided by D" : "")
set ylabel "validation loss (nats per token)"
set title sprintf("%s: validation loss vs training time\n{/*0.8 %s; start-up and evaluation left out%s}", run_name, run_mode, target == target ? sprintf("; dashed: target %.3f", target) : "")
if (target == target) { set arrow 1 from graph 0, first target to graph 1, first target nohead dt 2 lc rgb "#888888" }
# A sweep over the data (npanels > 1): one panel per corpus, as the paper's Figure 2, each
# with the arms made for it (arm_panel[i] == p) and the arms made for none (arm_panel[i] == 0).
in_panel(i, p) = arm_panel[i] == 0 || arm_panel[i] == p
do for [fmt in "png svg"] {
    if (npanels > 1) {
        eval (fmt eq "png" ? output_png_sized("loss_vs_time", 600 * npanels, 700) \
                           : output_svg_sized("loss_vs_time", 600 * npanels, 700))
        set multiplot layout 1, npanels title sprintf("%s: validation loss vs training time, one panel per corpus\n{/*0.8 %s}", run_name, run_mode)
        unset title
        set key top right font ",8"
        do for [p=1:npanels] {
            set title panel_title[p] noenhanced
            plot for [i=1:narms] (in_panel(i, p) ? arm_data[i].".val" : "/dev/null") using 2:4:5 with filledcurves fs transparent solid 0.18 noborder ls arm_style[i] notitle, \
                 for [i=1:narms] (in_panel(i, p) ? arm_data[i].".val" : "/dev/null") using 2:3 with linespoints ls arm_style[i] title (in_panel(i, p) ? arm_short[i] : "") noenhanced
        }
        unset multiplot
    } else {
        eval (fmt eq "png" ? output_png("loss_vs_time") : output_svg("loss_vs_time"))
        # with several seeds: the mean, and a band over its 95% interval (columns 4 and 5; equal to
        # the mean with one seed, so no band shows)
        plot for [i=1:narms] arm_data[i].".val" using 2:4:5 with filledcurves fs transparent solid 0.18 noborder ls i notitle, \
             for [i=1:narms] arm_data[i].".val" using 2:3 with linespoints ls i title arm_title[i] noenhanced
    }
}
