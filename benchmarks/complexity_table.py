"""Prints the survey's complexity table (Vaswani et al. 2017, Table 1) next to the same
columns computed from flopmeter traces (the README's table). Takes about half a minute.

    python benchmarks/complexity_table.py
"""

import warnings

from flopmeter.complexity import survey_table

warnings.filterwarnings("ignore")
print("| layer | survey: complexity per layer | traced MACs per layer (exact fit) | O(·) | "
      "survey: sequential operations | traced longest chain | O(·) |")
print("|---|---|---|---|---|---|---|")
for r in survey_table():
    print(f"| {r['layer'].strip()} | O({r['survey_complexity']}) | {r['macs']} | O({r['complexity']}) | "
          f"O({r['survey_sequential']}) | {r['chain'] or '—'} | {('O(' + r['sequential'] + ')') if r['chain'] else '—'} |")
