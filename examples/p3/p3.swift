type file;

# The cloud tutorial's part 3: the apps are called by name (simulate, stats), found on the
# workers' PATH: swiftrun.toml's [swift] path puts ../app there.
app (file o) simulation (int sim_steps, int sim_range, int sim_values)
{
    simulate "-t" sim_steps "-r" sim_range "-n" sim_values stdout=@o;
}

app (file o) analyze (file s[])
{
    stats filenames(s) stdout=@o;
}

int nsim   = toInt(arg("nsim",   "10"));
int steps  = toInt(arg("steps",  "1"));
int range  = toInt(arg("range",  "100"));
int values = toInt(arg("values", "5"));

file sims[];
foreach i in [0:nsim-1] {
    file simout <single_file_mapper; file=strcat("output/sim_", i, ".out")>;
    simout = simulation(steps, range, values);
    sims[i] = simout;
}

file stats <"output/average.out">;
stats = analyze(sims);
