#!/usr/bin/env bash
# Grade one assignment for a whole class as a Slurm job array, then merge the shards.
#
#   bash docs/examples/grade-slurm.sh submit      # on the login node, in the repository
#
# `submit` queues a job array of SHARDS tasks. Array task K runs
# `course-grade ... --shard K/SHARDS` and grades its part of the class into
# $OUTPUT-shards/K. A merge job then joins the shards into $OUTPUT (gradebook.csv,
# results.json, feedback/, records/). It is queued with --dependency=afterany, so it also runs
# when a task failed: the merge then says which shard is missing or incomplete. Resubmit and
# merge again: graded submissions are kept and not graded twice.
#
# Every task must read the same submissions folder and write where the merge job can read, so
# keep both on a shared file system (home or project space). Settings, as environment
# variables:
#   ASSIGNMENT   the student notebook handed out  (default notebooks/00_introduction.ipynb)
#   SUBMISSIONS  the folder of submissions        (default submissions/00_introduction)
#   OUTPUT       the merged output folder         (default grades/00_introduction)
#   SHARDS       the number of array tasks        (default 3)
#   GRADE        the grader command               (default course-grade; e.g. .venv/bin/course-grade)
#
#SBATCH --job-name=course-grade
#SBATCH --cpus-per-task=2
#SBATCH --mem=6G
#SBATCH --time=02:00:00
set -euo pipefail

ASSIGNMENT="${ASSIGNMENT:-notebooks/00_introduction.ipynb}"
SUBMISSIONS="${SUBMISSIONS:-submissions/00_introduction}"
OUTPUT="${OUTPUT:-grades/00_introduction}"
SHARDS="${SHARDS:-3}"
read -r -a GRADE <<< "${GRADE:-course-grade}"     # a command, possibly with arguments

case "${1:-}" in
  submit)
    mkdir -p logs
    array_id="$(sbatch --parsable --array="1-${SHARDS}" --output="logs/grade-%A_%a.out" \
                  --export=ALL "$0" grade)"
    merge_id="$(sbatch --parsable --dependency="afterany:${array_id%%;*}" \
                  --output="logs/merge-%j.out" --export=ALL "$0" merge)"
    echo "queued grading array ${array_id} (${SHARDS} shards) and merge job ${merge_id}"
    ;;
  grade)
    : "${SLURM_ARRAY_TASK_ID:?run this as an array task: bash $0 submit}"
    # One grading kernel per CPU of the task. Exit status 1 means that some submission got the
    # status grader-error: its row is in the gradebook for review, so the task still succeeds.
    "${GRADE[@]}" "$ASSIGNMENT" "$SUBMISSIONS" --shard "${SLURM_ARRAY_TASK_ID}/${SHARDS}" \
      -o "${OUTPUT}-shards/${SLURM_ARRAY_TASK_ID}" --jobs "${SLURM_CPUS_PER_TASK:-2}" -q \
      || [[ $? -eq 1 ]]
    ;;
  merge)
    shard_dirs=()
    for k in $(seq 1 "$SHARDS"); do shard_dirs+=("${OUTPUT}-shards/${k}"); done
    # --force: a merge from an earlier run may already be there; its files are replaced.
    # Exit status 1: merged, but some submission has status grader-error (see the gradebook).
    "${GRADE[@]}" merge "$OUTPUT" "${shard_dirs[@]}" --force || [[ $? -eq 1 ]]
    ;;
  *)
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
