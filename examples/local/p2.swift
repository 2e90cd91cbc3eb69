type file;

# The cloud tutorial's part 2, run on the headnode itself (site template "local"): an ensemble
# of simulations, each writing output/sim_N.out. No workers are needed.
app (file o) simulation ()
{
    simulate stdout=@filename(o);
}

foreach i in [0:9] {
    file f <single_file_mapper; file=strcat("output/sim_", i, ".out")>;
    f = simulation();
}
