#!/bin/sh
# mxscan's scheduled re-measurement: one dated results file per run (runs/DATE.ndjson), its
# report (reports/DATE.html), a diff against the previous run and the trend over all runs.
# Run it in the data directory that holds the domain list (cron: cd there first; systemd:
# WorkingDirectory=); it creates runs/ and reports/ there.
#
# A run cut short (a reboot, a kill, a full disk) is finished by the next invocation before
# the new run starts: the dated results file is the run's checkpoint, and its report is
# written last, so a results file without its report is a run still to finish.  diff and
# trend refuse a results file whose scan has not finished, so they never see a partial run.
#
# Settings, from the environment (or edit the defaults here):
#   MXSCAN          the mxscan command (default: mxscan on PATH, else /opt/mxscan/bin/mxscan);
#                   give cron an absolute path: its PATH is /usr/bin:/bin
#   MXSCAN_LIST     the domain list
#   MXSCAN_OPTIONS  scan options (resolver, identity, opt-out list, ...), separated by spaces
#   MXSCAN_TODAY    the run's date, YYYY-MM-DD (default: today)
#   MXSCAN_METRICS  an OpenMetrics file for node_exporter's textfile collector, kept current
#                   while a run scans and rewritten at its end (default: none), e.g.
#                   /var/lib/prometheus/node-exporter/mxscan.prom
set -eu

MXSCAN=${MXSCAN:-$(command -v mxscan || echo /opt/mxscan/bin/mxscan)}
MXSCAN_LIST=${MXSCAN_LIST:-top-100k.csv}
MXSCAN_OPTIONS=${MXSCAN_OPTIONS:---resolver 127.0.0.1:53 --ehlo-name scanner.example.org --exclude optout.txt}
today=${MXSCAN_TODAY:-$(date +%F)}
metrics=${MXSCAN_METRICS:+--metrics $MXSCAN_METRICS}

measure() {  # measure DAY: scan into runs/DAY.ndjson (resuming it), retry its unknowns, report it
  # shellcheck disable=SC2086 # MXSCAN_OPTIONS holds several words
  "$MXSCAN" scan "$MXSCAN_LIST" --out "runs/$1.ndjson" $MXSCAN_OPTIONS $metrics --progress plain
  # shellcheck disable=SC2086
  "$MXSCAN" scan "$MXSCAN_LIST" --out "runs/$1.ndjson" $MXSCAN_OPTIONS $metrics --progress plain --retry-unknown
  "$MXSCAN" report "runs/$1.ndjson" --format html --out "reports/$1.html"
}

mkdir -p runs reports

# 1. Finish every earlier run that was cut short (it has no report yet).
for run in runs/*.ndjson; do
  [ -e "$run" ] || continue
  day=$(basename "$run" .ndjson)
  if [ "$day" != "$today" ] && [ ! -e "reports/$day.html" ]; then
    echo "remeasure: finishing the run of $day first" >&2
    measure "$day"
  fi
done

# 2. Today's run (resumed, if an earlier invocation today was cut short).
measure "$today"

# 3. What changed since the previous run, and the figures over time.
previous=$(ls runs/*.ndjson | grep -v "^runs/$today\.ndjson\$" | sort | tail -n 1)
if [ -n "$previous" ]; then
  "$MXSCAN" diff "$previous" "runs/$today.ndjson" --out "reports/$today.diff.txt"
fi
"$MXSCAN" trend runs/*.ndjson --csv reports/trend.csv --html reports/trend.html
