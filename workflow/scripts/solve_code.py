"""Snakemake job: solve the Tammes or the softmax-code problem for one (d, K); save the solution."""
from gnc import codes
from gnc.codes.store import save_solution
from gnc.jobs import job

with job(snakemake) as log:  # noqa: F821
    d, K, problem = int(snakemake.wildcards.d), int(snakemake.wildcards.K), snakemake.wildcards.problem
    opts = snakemake.params.options
    solver = {"tammes": codes.solve_tammes, "softmax": codes.solve_softmax_code}[problem]
    sol = solver(d, K, restarts=opts["restarts"], seed=opts["seed"], time_budget=opts["time_budget"])
    save_solution(sol, snakemake.output[0])
    log.info("%s d=%d K=%d: value %.8g, min angle %.6f deg, ovr %.8g, %.1f s", problem, d, K, sol.value,
             sol.min_angle_deg, sol.ovr, sol.seconds)
