# Shared look of every figure; loaded by the other scripts after plot-data/arms.gp, which
# sets narms, arm_data[i], arm_title[i], arm_short[i], arm_panel[i], npanels, panel_title[p],
# run_dir, run_name, run_mode, target, data_dir and has_prediction (step_time.gp)
# (wancp plot also sets plots_dir, where these scripts are).
set encoding utf8
set grid lc rgb "#dddddd"
set key top right box opaque font ",9" spacing 1.1
set border lc rgb "#444444"
set style line 1 lc rgb "#c0392b" lw 2 pt 7 ps 0.6
set style line 2 lc rgb "#2471a3" lw 2 pt 5 ps 0.6
set style line 3 lc rgb "#229954" lw 2 pt 9 ps 0.6
set style line 4 lc rgb "#7d3c98" lw 2 pt 11 ps 0.6
set style line 5 lc rgb "#d68910" lw 2 pt 13 ps 0.6
set style line 6 lc rgb "#5d6d7e" lw 2 pt 3 ps 0.6
set style increment user
# output_png(name), output_svg(name): the terminal and the file run_dir/name.png or .svg
output_png(name) = sprintf("set terminal pngcairo size 1100,700 font ',11'; set output '%s/%s.png'", run_dir, name)
output_svg(name) = sprintf("set terminal svg size 1100,700 dynamic font ',11'; set output '%s/%s.svg'", run_dir, name)
# output_png_sized(name, w, h), output_svg_sized(name, w, h): the same at another size (panels)
output_png_sized(name, w, h) = sprintf("set terminal pngcairo size %d,%d font ',11'; set output '%s/%s.png'", w, h, run_dir, name)
output_svg_sized(name, w, h) = sprintf("set terminal svg size %d,%d dynamic font ',11'; set output '%s/%s.svg'", w, h, run_dir, name)
