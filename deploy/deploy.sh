#!/usr/bin/env bash
# Deploys matchrelay as a Cloud Run function (gen2) with gcloud: the same resources
# as the Terraform module beside it. `deploy/deploy.sh --help` lists the settings.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: deploy/deploy.sh [--dry-run]

Deploys matchrelay as a Cloud Run function (gen2) triggered by Pub/Sub through
Eventarc: the trigger, events, error and dead-letter topics, a subscription on
the dead-letter topic, the function's service account and its IAM bindings, the
client secret in Secret Manager, the function, the ack deadline (600 s) and
dead-letter policy on the subscription Eventarc creates for the trigger, and
the Cloud Scheduler jobs of SWEEPS. Running it again keeps what exists,
redeploys the function, puts the subscription's settings back, updates the
sweep jobs and deletes the sweep jobs SWEEPS no longer names.

Options:
  --dry-run   print the gcloud commands instead of running them; needs neither
              gcloud nor the secret, and assumes nothing exists yet
  -h, --help  show this help

Settings (environment variables):
  GOOGLE_CLOUD_PROJECT   required   Google Cloud project id
  REGION                 required   region of the function and its trigger, e.g. europe-west1
  CDF_PROJECT            required   the CDF project
  CDF_CLUSTER            one of     CDF cluster, e.g. westeurope-1
  CDF_URL                  these    base URL of the CDF API (https://...)
  CDF_ALLOWED_PROJECTS   CDF_PROJECT  comma-separated projects a trigger may name
  IDP_TOKEN_URL          required   OAuth 2.0 token endpoint
  IDP_CLIENT_ID          required   OAuth 2.0 client id
  IDP_CLIENT_SECRET      stdin      OAuth 2.0 client secret, added as a new version of
                                    the secret FUNCTION_NAME-idp-client-secret; read
                                    from stdin when unset (silently at a terminal);
                                    empty keeps the secret's current version
  IDP_SCOPES             (unset)    space- or comma-separated scopes
  IDP_AUDIENCE           (unset)    audience of the token request
  POLL_BUDGET_S          480        seconds one invocation polls, below TIMEOUT_S
  TIMEOUT_S              540        seconds an invocation may run, 5 to 540; also the
                                    function's INVOCATION_TIMEOUT_S
  RUN_MAX_WAIT_S         82800      seconds before a trigger is given up, 1 to 86400
  LOG_LEVEL              INFO       DEBUG, INFO, WARNING, ERROR or CRITICAL
  EXTRA_ENV_VARS         (unset)    more KEY=VALUE pairs separated by '|', e.g.
                                    CDF_API_VERSION=beta|HTTP_TIMEOUT_S=20
  FUNCTION_NAME          matchrelay function name, and prefix of the topics
                                    (-trigger, -events, -errors, -dead-letter), the
                                    dead-letter subscription, service account, secret
  RUNTIME                python311  Python runtime
  MEMORY                 1Gi        memory of one instance (fits CONCURRENCY 80)
  CONCURRENCY            80         requests one instance serves at once, 1 to 1000;
                                    also the function's THREADS (each instance has 1 vCPU)
  MAX_INSTANCES          10         most instances at once, 1 to 1000
  MAX_DELIVERY_ATTEMPTS  100        deliveries of a trigger before it is dead-lettered, 5 to 100
  SOURCE_DIR             repo root  directory deployed (deploy/.gcloudignore applies)
  KMS_KEY_NAME           (unset)    Cloud KMS key encrypting the topics
                                    (projects/P/locations/L/keyRings/R/cryptoKeys/K)
  SWEEPS                 (unset)    scheduled sweeps, separated by ';', each
                                    PIPELINE:WINDOW_S:CRON, PIPELINE a pipeline id or
                                    'all'; e.g. '123:900:*/15 * * * *;all:3600:5 * * * *'.
                                    CRON (UTC) must fire once in every WINDOW_S window:
                                    '*/M * * * *' for 60*M (M divides 60), 'MM */h * * *'
                                    for 3600*h (h divides 24; 'MM * * * *' hourly),
                                    'MM HH * * *' for 86400, 'MM HH * * D' for 604800

Exit status: 0 deployed (or printed), 2 a setting is missing or wrong, other: a
gcloud command failed.
EOF
}

die() {
  printf 'deploy.sh: %s\n' "$*" >&2
  exit 2
}

dry_run=0
for arg in "$@"; do
  case $arg in
    --dry-run) dry_run=1 ;;
    -h | --help)
      usage
      exit 0
      ;;
    *) die "unknown argument: $arg (see --help)" ;;
  esac
done

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# --- settings -----------------------------------------------------------------

require() {
  local name
  for name in "$@"; do
    [[ -n ${!name:-} ]] || die "$name is required (see --help)"
  done
}

in_range() { # in_range NAME MIN MAX: NAME holds a whole number from MIN to MAX
  local value=${!1}
  if [[ ! $value =~ ^[0-9]{1,9}$ ]] || ((10#$value < $2 || 10#$value > $3)); then
    die "$1 must be a whole number from $2 to $3, not '$value'"
  fi
}

require GOOGLE_CLOUD_PROJECT REGION CDF_PROJECT IDP_TOKEN_URL IDP_CLIENT_ID
if [[ -z ${CDF_CLUSTER:-} && -z ${CDF_URL:-} ]]; then
  die "CDF_CLUSTER or CDF_URL is required (see --help)"
elif [[ -n ${CDF_CLUSTER:-} && -n ${CDF_URL:-} ]]; then
  die "CDF_CLUSTER and CDF_URL are both set: set one of them"
fi
[[ -z ${CDF_URL:-} || $CDF_URL =~ ^https://[^/?#]+ ]] || die "CDF_URL must be an https:// URL"
[[ $IDP_TOKEN_URL =~ ^https:// ]] || die "IDP_TOKEN_URL must be an https:// URL"

project=$GOOGLE_CLOUD_PROJECT
name=${FUNCTION_NAME:-matchrelay}
runtime=${RUNTIME:-python311}
memory=${MEMORY:-1Gi}
POLL_BUDGET_S=${POLL_BUDGET_S:-480}
TIMEOUT_S=${TIMEOUT_S:-540}
CONCURRENCY=${CONCURRENCY:-80}
RUN_MAX_WAIT_S=${RUN_MAX_WAIT_S:-82800}
LOG_LEVEL=${LOG_LEVEL:-INFO}
MAX_INSTANCES=${MAX_INSTANCES:-10}
MAX_DELIVERY_ATTEMPTS=${MAX_DELIVERY_ATTEMPTS:-100}
source_dir=${SOURCE_DIR:-$(dirname "$script_dir")}

[[ $name =~ ^[a-z][a-z0-9-]{4,28}[a-z0-9]$ ]] ||
  die "FUNCTION_NAME must be 6 to 30 lowercase letters, digits or hyphens, starting with a letter"
[[ $runtime =~ ^python3[0-9]+$ ]] || die "RUNTIME must be a Python runtime such as python311"
[[ $memory =~ ^[0-9]+(k|M|G|Ki|Mi|Gi)$ ]] || die "MEMORY must look like 512Mi"
in_range TIMEOUT_S 5 540 # event functions time out at 540 s at most
in_range POLL_BUDGET_S 1 $((10#$TIMEOUT_S - 1))
in_range CONCURRENCY 1 1000
in_range RUN_MAX_WAIT_S 1 86400
in_range MAX_INSTANCES 1 1000
in_range MAX_DELIVERY_ATTEMPTS 5 100
case $LOG_LEVEL in
  DEBUG | INFO | WARNING | ERROR | CRITICAL) ;;
  *) die "LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL" ;;
esac
[[ -d $source_dir ]] || die "SOURCE_DIR $source_dir is not a directory"
[[ -z ${KMS_KEY_NAME:-} || $KMS_KEY_NAME =~ ^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$ ]] ||
  die "KMS_KEY_NAME must be projects/PROJECT/locations/LOCATION/keyRings/RING/cryptoKeys/KEY"

trigger_topic=$name-trigger
events_topic=$name-events
errors_topic=$name-errors
dead_letter_topic=$name-dead-letter
dead_letter_subscription=$name-dead-letter
secret=$name-idp-client-secret
sa_email=$name@$project.iam.gserviceaccount.com
sa_member=serviceAccount:$sa_email

# The function's environment; '|' separates the pairs (gcloud's ^|^ syntax), so
# commas may appear in values (CDF_ALLOWED_PROJECTS, IDP_SCOPES).
env_vars=(
  "CDF_PROJECT=$CDF_PROJECT"
  "CDF_ALLOWED_PROJECTS=${CDF_ALLOWED_PROJECTS:-$CDF_PROJECT}"
  "IDP_TOKEN_URL=$IDP_TOKEN_URL"
  "IDP_CLIENT_ID=$IDP_CLIENT_ID"
  "RELAY_TOPIC=projects/$project/topics/$events_topic"
  "RELAY_ERROR_TOPIC=projects/$project/topics/$errors_topic"
  "RELAY_TRIGGER_TOPIC=projects/$project/topics/$trigger_topic"
  "POLL_BUDGET_S=$POLL_BUDGET_S"
  "INVOCATION_TIMEOUT_S=$TIMEOUT_S"
  "RUN_MAX_WAIT_S=$RUN_MAX_WAIT_S"
  "LOG_LEVEL=$LOG_LEVEL"
  "THREADS=$CONCURRENCY" # functions-framework's gunicorn serves THREADS requests at once
)
optional_vars=(CDF_CLUSTER CDF_URL IDP_SCOPES IDP_AUDIENCE)
managed=" ${env_vars[*]%%=*} ${optional_vars[*]} "
for optional in "${optional_vars[@]}"; do
  if [[ -n ${!optional:-} ]]; then
    env_vars+=("$optional=${!optional}")
  fi
done
if [[ -n ${EXTRA_ENV_VARS:-} ]]; then
  IFS='|' read -r -a extra_vars <<<"$EXTRA_ENV_VARS"
  for pair in "${extra_vars[@]}"; do
    [[ $pair =~ ^[A-Z_][A-Z0-9_]*= ]] || die "EXTRA_ENV_VARS: '$pair' is not KEY=VALUE"
    key=${pair%%=*}
    [[ $managed != *" $key "* ]] || die "EXTRA_ENV_VARS: $key is set by deploy.sh (see --help)"
    [[ $key != IDP_CLIENT_SECRET && $key != CDF_TOKEN ]] || die "EXTRA_ENV_VARS: $key is a secret, not for the environment"
    env_vars+=("$pair")
  done
fi
for pair in "${env_vars[@]}"; do
  [[ $pair != *'|'* ]] || die "${pair%%=*} must not contain '|'"
done
env_flag=$(
  IFS='|'
  printf '^|^%s' "${env_vars[*]}"
)

# Sweeps. A sweep covers the last whole window before it fires, windows aligned to multiples of WINDOW_S since
# the epoch, so its cron must fire once per window: the pattern for each window length (the same table as
# variables.tf); a window no cron can follow has none.
declare -A sweep_crons=(
  [60]='^\*(/1)? \* \* \* \*$'
  [120]='^\*/2 \* \* \* \*$'
  [180]='^\*/3 \* \* \* \*$'
  [240]='^\*/4 \* \* \* \*$'
  [300]='^\*/5 \* \* \* \*$'
  [360]='^\*/6 \* \* \* \*$'
  [600]='^\*/10 \* \* \* \*$'
  [720]='^\*/12 \* \* \* \*$'
  [900]='^\*/15 \* \* \* \*$'
  [1200]='^\*/20 \* \* \* \*$'
  [1800]='^\*/30 \* \* \* \*$'
  [3600]='^[0-5]?[0-9] \* \* \* \*$'
  [7200]='^[0-5]?[0-9] \*/2 \* \* \*$'
  [10800]='^[0-5]?[0-9] \*/3 \* \* \*$'
  [14400]='^[0-5]?[0-9] \*/4 \* \* \*$'
  [21600]='^[0-5]?[0-9] \*/6 \* \* \*$'
  [28800]='^[0-5]?[0-9] \*/8 \* \* \*$'
  [43200]='^[0-5]?[0-9] \*/12 \* \* \*$'
  [86400]='^[0-5]?[0-9] (1?[0-9]|2[0-3]) \* \* \*$'
  [604800]='^[0-5]?[0-9] (1?[0-9]|2[0-3]) \* \* [0-6]$'
)
sweep_jobs=() sweep_specs=() # job names, and PIPELINE:WINDOW_S:CRON for each
if [[ -n ${SWEEPS:-} ]]; then
  IFS=';' read -r -a entries <<<"$SWEEPS"
  for entry in "${entries[@]}"; do
    pipeline=${entry%%:*} rest=${entry#*:}
    window=${rest%%:*} cron=${rest#*:}
    [[ $entry == *:*:* ]] || die "SWEEPS: '$entry' is not PIPELINE:WINDOW_S:CRON"
    if [[ $pipeline != all && ! ($pipeline =~ ^[1-9][0-9]{0,15}$ && $((pipeline)) -le 9007199254740991) ]]; then
      die "SWEEPS: pipeline '$pipeline' must be a pipeline id from 1 to 9007199254740991, or all"
    fi
    if [[ ! $window =~ ^[0-9]{1,9}$ ]] || ((10#$window < 60 || 10#$window > 2678400)); then
      die "SWEEPS: window '$window' must be a whole number of seconds from 60 to 2678400"
    fi
    window=$((10#$window))
    pattern=${sweep_crons[$window]:-}
    [[ -n $pattern && $cron =~ $pattern ]] ||
      die "SWEEPS: '$cron' does not fire once in every $window s window (UTC); see --help for the forms"
    job=$name-sweep-$pipeline-$window
    [[ " ${sweep_jobs[*]} " != *" $job "* ]] || die "SWEEPS: $pipeline:$window appears twice"
    sweep_jobs+=("$job") sweep_specs+=("$pipeline:$window:$cron")
  done
fi

# --- how commands run -----------------------------------------------------------

show() { # show CMD...: print a command, quoted for the shell
  local arg quote="'\\''" words=()
  for arg in "$@"; do
    if [[ $arg =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
      words+=("$arg")
    else
      words+=("'${arg//\'/$quote}'")
    fi
  done
  printf '%s\n' "${words[*]}"
}

run() { # run CMD...: a change; printed instead under --dry-run
  if ((dry_run)); then show "$@"; else "$@"; fi
}

exists() { # exists CMD...: a describe command; under --dry-run nothing exists
  ((!dry_run)) && "$@" >/dev/null 2>&1
}

project_number='' trigger='' subscription='' # set by lookup
lookup() { # lookup VAR PLACEHOLDER CMD...: VAR=$(CMD); under --dry-run VAR=PLACEHOLDER
  local var=$1 placeholder=$2 value
  shift 2
  if ((dry_run)); then
    printf '# %s is the output of: ' "$placeholder"
    show "$@"
    value=$placeholder
  else
    value=$("$@")
    [[ -n $value ]] || die "no answer from: $*"
  fi
  printf -v "$var" '%s' "$value"
}

bind() { # bind CMD...: an IAM binding; retried, IAM may not know a new service account yet
  local attempt
  for attempt in 1 2 3 4; do
    if run "$@"; then return 0; fi
    printf 'deploy.sh: %s failed, retrying in %ss\n' "${*:1:5}" $((attempt * 10)) >&2
    sleep $((attempt * 10))
  done
  run "$@"
}

if ((!dry_run)); then
  command -v gcloud >/dev/null || die "gcloud is not installed (or use --dry-run)"
  if [[ -z ${IDP_CLIENT_SECRET+set} ]]; then
    if [[ -t 0 ]]; then
      read -r -s -p 'IDP client secret (Enter keeps the stored one): ' IDP_CLIENT_SECRET || true
      printf '\n' >&2
    else
      IFS= read -r IDP_CLIENT_SECRET || true
    fi
  fi
  export -n IDP_CLIENT_SECRET # gcloud needs it on stdin only
  if [[ -z $IDP_CLIENT_SECRET ]] &&
    ! gcloud secrets versions describe latest --secret="$secret" --project="$project" >/dev/null 2>&1; then
    die "IDP_CLIENT_SECRET is required: secret $secret has no version to keep"
  fi
fi

lookup project_number PROJECT_NUMBER gcloud projects describe "$project" --format='value(projectNumber)'
pubsub_agent=serviceAccount:service-$project_number@gcp-sa-pubsub.iam.gserviceaccount.com

# --- resources ------------------------------------------------------------------

run gcloud services enable artifactregistry.googleapis.com cloudbuild.googleapis.com cloudfunctions.googleapis.com \
  cloudscheduler.googleapis.com eventarc.googleapis.com pubsub.googleapis.com run.googleapis.com \
  secretmanager.googleapis.com --project="$project"

kms_flags=()
[[ -z ${KMS_KEY_NAME:-} ]] || kms_flags=(--topic-encryption-key="$KMS_KEY_NAME")
for topic in "$trigger_topic" "$events_topic" "$errors_topic" "$dead_letter_topic"; do
  if exists gcloud pubsub topics describe "$topic" --project="$project"; then
    ((${#kms_flags[@]} == 0)) || run gcloud pubsub topics update "$topic" --project="$project" "${kms_flags[@]}"
  else
    run gcloud pubsub topics create "$topic" --project="$project" "${kms_flags[@]}"
  fi
done
# Keeps dead-lettered trigger messages for 7 days.
exists gcloud pubsub subscriptions describe "$dead_letter_subscription" --project="$project" ||
  run gcloud pubsub subscriptions create "$dead_letter_subscription" --project="$project" \
    --topic="$dead_letter_topic" --message-retention-duration=7d --expiration-period=never

exists gcloud iam service-accounts describe "$sa_email" --project="$project" ||
  run gcloud iam service-accounts create "$name" --project="$project" --display-name="matchrelay function $name"

# The function's identity: publisher on its two topics and on the trigger topic (continuation and sweep
# triggers), event receiver for Eventarc.
for topic in "$events_topic" "$errors_topic" "$trigger_topic"; do
  bind gcloud pubsub topics add-iam-policy-binding "$topic" --project="$project" \
    --member="$sa_member" --role=roles/pubsub.publisher
done
bind gcloud projects add-iam-policy-binding "$project" --member="$sa_member" \
  --role=roles/eventarc.eventReceiver --condition=None
# The Pub/Sub service agent moves failed trigger messages to the dead-letter topic.
bind gcloud pubsub topics add-iam-policy-binding "$dead_letter_topic" --project="$project" \
  --member="$pubsub_agent" --role=roles/pubsub.publisher

exists gcloud secrets describe "$secret" --project="$project" ||
  run gcloud secrets create "$secret" --project="$project" --replication-policy=automatic
if ((dry_run)); then
  show gcloud secrets versions add "$secret" --project="$project" --data-file=-
  printf '# (the value of IDP_CLIENT_SECRET on stdin)\n'
elif [[ -n $IDP_CLIENT_SECRET ]]; then
  printf '%s' "$IDP_CLIENT_SECRET" | gcloud secrets versions add "$secret" --project="$project" --data-file=-
fi
bind gcloud secrets add-iam-policy-binding "$secret" --project="$project" \
  --member="$sa_member" --role=roles/secretmanager.secretAccessor

run gcloud functions deploy "$name" --gen2 --project="$project" --region="$REGION" \
  --runtime="$runtime" --source="$source_dir" --ignore-file="$script_dir/.gcloudignore" \
  --entry-point=on_run_message --trigger-topic="$trigger_topic" --trigger-location="$REGION" --retry \
  --timeout="${TIMEOUT_S}s" --memory="$memory" --cpu=1 --concurrency="$CONCURRENCY" --max-instances="$MAX_INSTANCES" \
  --ingress-settings=internal-only --service-account="$sa_email" --trigger-service-account="$sa_email" \
  --set-env-vars="$env_flag" --set-secrets="IDP_CLIENT_SECRET=$secret:latest" --quiet

# Eventarc invokes the function's Cloud Run service as the trigger's service account.
bind gcloud run services add-iam-policy-binding "$name" --project="$project" --region="$REGION" \
  --member="$sa_member" --role=roles/run.invoker

# The push subscription Eventarc created for the trigger: a 600 s ack deadline (also how long Pub/Sub waits for a
# push; at Eventarc's 10 s it would push again while the first delivery still polls) and the dead-letter policy.
lookup trigger EVENTARC_TRIGGER gcloud functions describe "$name" --gen2 --project="$project" --region="$REGION" \
  --format='value(eventTrigger.trigger)'
lookup subscription EVENTARC_SUBSCRIPTION gcloud eventarc triggers describe "${trigger##*/}" --project="$project" \
  --location="$REGION" --format='value(transport.pubsub.subscription)'
bind gcloud pubsub subscriptions add-iam-policy-binding "$subscription" --project="$project" \
  --member="$pubsub_agent" --role=roles/pubsub.subscriber
run gcloud pubsub subscriptions update "$subscription" --project="$project" --ack-deadline=600 \
  --dead-letter-topic="projects/$project/topics/$dead_letter_topic" --max-delivery-attempts="$MAX_DELIVERY_ATTEMPTS"

# Sweep jobs, once the subscription exists (a message on a topic without one is lost). Cloud Scheduler publishes
# as its service agent, whose role includes pubsub.topics.publish. Retries (5, 10, 20 s) end within the shortest
# window, so a retried tick still covers its own window.
for i in "${!sweep_jobs[@]}"; do
  job=${sweep_jobs[i]} spec=${sweep_specs[i]}
  pipeline=${spec%%:*} rest=${spec#*:}
  window=${rest%%:*} cron=${rest#*:}
  body="{\"runsCreated\":{\"windowS\":$window}}" scope="every pipeline"
  if [[ $pipeline != all ]]; then
    body="{\"pipelineId\":$pipeline,\"runsCreated\":{\"windowS\":$window}}" scope="pipeline $pipeline"
  fi
  verb=create
  exists gcloud scheduler jobs describe "$job" --project="$project" --location="$REGION" && verb=update
  run gcloud scheduler jobs "$verb" pubsub "$job" --project="$project" --location="$REGION" \
    --schedule="$cron" --time-zone=Etc/UTC --topic="projects/$project/topics/$trigger_topic" --message-body="$body" \
    --max-retry-attempts=3 --min-backoff=5s --max-backoff=20s --max-doublings=2 \
    --description="$name: relay the runs created in each $window s window ($scope)."
done
# Sweep jobs SWEEPS no longer names (only NAME-sweep-PIPELINE-WINDOW_S, not another function's).
if ((!dry_run)); then
  while IFS= read -r job; do
    job=${job##*/}
    if [[ ${job#"$name"-sweep-} =~ ^(all|[0-9]+)-[0-9]+$ && " ${sweep_jobs[*]} " != *" $job "* ]]; then
      run gcloud scheduler jobs delete "$job" --project="$project" --location="$REGION" --quiet
    fi
  done < <(gcloud scheduler jobs list --project="$project" --location="$REGION" --format='value(name)')
else
  printf '# and: gcloud scheduler jobs delete for each %s-sweep-* job that SWEEPS no longer names\n' "$name"
fi

if ((!dry_run)); then
  printf 'deploy.sh: deployed %s; publish {"pipelineId": N, "runId": M} to projects/%s/topics/%s\n' \
    "$name" "$project" "$trigger_topic" >&2
fi
