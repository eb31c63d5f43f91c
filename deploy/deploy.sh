#!/usr/bin/env bash
# Deploys matchrelay as a Cloud Run function (gen2) with gcloud: the same resources
# as the Terraform module beside it. `deploy/deploy.sh --help` lists the settings.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: deploy/deploy.sh [--dry-run]

Deploys matchrelay as a Cloud Run function (gen2): the trigger, events, error
and dead-letter topics, a subscription on the dead-letter topic, the function's
service account and its IAM bindings, the client secret in Secret Manager, the
function, its delivery and the Cloud Scheduler jobs of SWEEPS. With TRIGGER=push
(the default) the function is an HTTP function and the trigger topic gets a push
subscription NAME-trigger to its URL, authenticated as the invoker service
account, with a 600 s ack deadline, retries from 10 s to 600 s and the
dead-letter policy. With TRIGGER=eventarc it gets an Eventarc trigger, and the
ack deadline (600 s) and dead-letter policy are set on the subscription Eventarc
creates. LINK=true adds the link: the function NAME-link (on_run_completed)
with its own service account and client secret, fed run.completed events by the
push subscription NAME-link on the events topic. REVIEW=true (with LINK=true)
adds the review: the function NAME-review (on_review_decision) with its own
service account and client secret, the decisions topic NAME-decisions, and the
push subscription NAME-review on it, with message ordering, the same ack
deadline, retries and its own dead letters. Running it again keeps what exists,
redeploys the functions, puts the subscriptions' settings back, updates the
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
                                    from stdin's first line when unset (silently at a
                                    terminal); empty keeps the secret's current version
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
  TRIGGER                push       how triggers reach the function: push (a push
                                    subscription deploy.sh owns) or eventarc
  MAX_DELIVERY_ATTEMPTS  100        deliveries of a message before it is dead-lettered, 5 to 100
  TRACING                false      true: send the functions' spans to Cloud Trace
                                    (OTEL_TRACES_EXPORTER=gcp_trace, OTEL_SERVICE_NAME,
                                    roles/cloudtrace.agent for their service accounts)
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
  LINK                   false      true: deploy the link, FUNCTION_NAME-link
  LINK_IDP_CLIENT_ID     with LINK  OAuth 2.0 client id of the link's own CDF identity
  LINK_IDP_CLIENT_SECRET stdin      its secret, a new version of FUNCTION_NAME-link-idp-client-secret;
                                    read from stdin's next line when unset; empty keeps it
  LINK_MIN_SCORE         0.9        the link's LINK_MIN_SCORE, 0 to 1
  LINK_OVERWRITE         false      the link's LINK_OVERWRITE, true or false
  LINK_TRUST_RULES       true       the link's LINK_TRUST_RULES, true or false
  LINK_CONCURRENCY       4          the link's LINK_CONCURRENCY, 1 to 16
  LINK_PIPELINES         (all)      the link's LINK_PIPELINES: comma-separated pipeline ids
  LINK_DRY_RUN           false      the link's LINK_DRY_RUN, true or false
  LINK_TOPIC             events     the link's LINK_TOPIC, projects/P/topics/T; the link
                                    may publish there
  LINK_MAX_INSTANCES     1          most link instances at once, 1 to 100
  LINK_INSTANCE_CONCURRENCY 4       run.completed events one link instance handles at once, 1 to 80
  REVIEW_MIN_SCORE       0.5        the link's REVIEW_MIN_SCORE, 0 to 1
  REVIEW_MAX_EVENTS      10000      the link's REVIEW_MAX_EVENTS: link.review events per run at most, 0: none
  REVIEW_TOPIC           LINK_TOPIC the link's and the review's REVIEW_TOPIC, projects/P/topics/T;
                                    both may publish there
  REVIEW                 false      true: deploy the review, FUNCTION_NAME-review (needs LINK=true)
  REVIEW_IDP_CLIENT_ID   with REVIEW  OAuth 2.0 client id of the review's own CDF identity
  REVIEW_IDP_CLIENT_SECRET stdin    its secret, a new version of FUNCTION_NAME-review-idp-client-secret;
                                    read from stdin's next line when unset; empty keeps it
  REVIEW_MAX_INSTANCES   1          most review instances at once, 1 to 100
  REVIEW_INSTANCE_CONCURRENCY 4     decision messages one review instance handles at once, 1 to 80

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

boolean() { # boolean NAME: NAME holds true or false
  [[ ${!1} == true || ${!1} == false ]] || die "$1 must be true or false, not '${!1}'"
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
TRIGGER=${TRIGGER:-push}
TRACING=${TRACING:-false}
LINK=${LINK:-false}
REVIEW=${REVIEW:-false}
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
[[ $TRIGGER == push || $TRIGGER == eventarc ]] || die "TRIGGER must be push or eventarc, not '$TRIGGER'"
boolean TRACING
boolean LINK
boolean REVIEW
[[ $REVIEW == false || $LINK == true ]] || die "REVIEW=true needs LINK=true: the review applies decisions on what the link leaves"
if [[ $LINK == true ]]; then
  require LINK_IDP_CLIENT_ID
  LINK_MIN_SCORE=${LINK_MIN_SCORE:-0.9}
  LINK_OVERWRITE=${LINK_OVERWRITE:-false}
  LINK_TRUST_RULES=${LINK_TRUST_RULES:-true}
  LINK_CONCURRENCY=${LINK_CONCURRENCY:-4}
  LINK_DRY_RUN=${LINK_DRY_RUN:-false}
  LINK_TOPIC=${LINK_TOPIC:-projects/$GOOGLE_CLOUD_PROJECT/topics/${FUNCTION_NAME:-matchrelay}-events}
  LINK_MAX_INSTANCES=${LINK_MAX_INSTANCES:-1}
  LINK_INSTANCE_CONCURRENCY=${LINK_INSTANCE_CONCURRENCY:-4}
  [[ $LINK_MIN_SCORE =~ ^(0(\.[0-9]+)?|1(\.0+)?)$ ]] || die "LINK_MIN_SCORE must be a number from 0 to 1, not '$LINK_MIN_SCORE'"
  boolean LINK_OVERWRITE
  boolean LINK_TRUST_RULES
  boolean LINK_DRY_RUN
  in_range LINK_CONCURRENCY 1 16
  in_range LINK_MAX_INSTANCES 1 100
  in_range LINK_INSTANCE_CONCURRENCY 1 80
  [[ -z ${LINK_PIPELINES:-} || $LINK_PIPELINES =~ ^[1-9][0-9]{0,15}(,[1-9][0-9]{0,15})*$ ]] ||
    die "LINK_PIPELINES must be pipeline ids separated by commas, not '$LINK_PIPELINES'"
  [[ $LINK_TOPIC =~ ^projects/[^/]+/topics/[^/]+$ ]] || die "LINK_TOPIC must be projects/PROJECT/topics/TOPIC"
  REVIEW_MIN_SCORE=${REVIEW_MIN_SCORE:-0.5}
  REVIEW_MAX_EVENTS=${REVIEW_MAX_EVENTS:-10000}
  REVIEW_TOPIC=${REVIEW_TOPIC:-$LINK_TOPIC}
  [[ $REVIEW_MIN_SCORE =~ ^(0(\.[0-9]+)?|1(\.0+)?)$ ]] ||
    die "REVIEW_MIN_SCORE must be a number from 0 to 1, not '$REVIEW_MIN_SCORE'"
  in_range REVIEW_MAX_EVENTS 0 1000000000
  [[ $REVIEW_TOPIC =~ ^projects/[^/]+/topics/[^/]+$ ]] || die "REVIEW_TOPIC must be projects/PROJECT/topics/TOPIC"
fi
if [[ $REVIEW == true ]]; then
  require REVIEW_IDP_CLIENT_ID
  REVIEW_MAX_INSTANCES=${REVIEW_MAX_INSTANCES:-1}
  REVIEW_INSTANCE_CONCURRENCY=${REVIEW_INSTANCE_CONCURRENCY:-4}
  in_range REVIEW_MAX_INSTANCES 1 100
  in_range REVIEW_INSTANCE_CONCURRENCY 1 80
fi

trigger_topic=$name-trigger
events_topic=$name-events
errors_topic=$name-errors
dead_letter_topic=$name-dead-letter
push_subscription=$name-trigger
secret=$name-idp-client-secret
sa_email=$name@$project.iam.gserviceaccount.com
sa_member=serviceAccount:$sa_email
# Account ids allow 30 characters: the name is cut to fit, as in the Terraform module.
invoker_email=${name:0:22}-invoker@$project.iam.gserviceaccount.com
link_name=$name-link
link_email=${name:0:25}-link@$project.iam.gserviceaccount.com
link_secret=$name-link-idp-client-secret
link_dead_letter=$name-link-dead-letter
review_name=$name-review
review_email=${name:0:23}-review@$project.iam.gserviceaccount.com
review_secret=$name-review-idp-client-secret
review_dead_letter=$name-review-dead-letter
decisions_topic=$name-decisions
pushes=0 # whether anything is pushed, and so whether the invoker account exists
[[ $TRIGGER == push || $LINK == true || $REVIEW == true ]] && pushes=1

# The functions' environment; '|' separates the pairs (gcloud's ^|^ syntax), so
# commas may appear in values (CDF_ALLOWED_PROJECTS, IDP_SCOPES, LINK_PIPELINES).
# What the relay, the link and the review share:
shared_vars=(
  "CDF_PROJECT=$CDF_PROJECT"
  "CDF_ALLOWED_PROJECTS=${CDF_ALLOWED_PROJECTS:-$CDF_PROJECT}"
  "IDP_TOKEN_URL=$IDP_TOKEN_URL"
  "RELAY_TOPIC=projects/$project/topics/$events_topic"
  "INVOCATION_TIMEOUT_S=$TIMEOUT_S"
  "LOG_LEVEL=$LOG_LEVEL"
)
[[ $TRACING == false ]] || shared_vars+=("OTEL_TRACES_EXPORTER=gcp_trace")
env_vars=(
  "${shared_vars[@]}"
  "IDP_CLIENT_ID=$IDP_CLIENT_ID"
  "RELAY_ERROR_TOPIC=projects/$project/topics/$errors_topic"
  "RELAY_TRIGGER_TOPIC=projects/$project/topics/$trigger_topic"
  "POLL_BUDGET_S=$POLL_BUDGET_S"
  "RUN_MAX_WAIT_S=$RUN_MAX_WAIT_S"
  "THREADS=$CONCURRENCY" # functions-framework's gunicorn serves THREADS requests at once
)
[[ $TRACING == false ]] || env_vars+=("OTEL_SERVICE_NAME=$name")
link_vars=()
if [[ $LINK == true ]]; then
  link_vars=(
    "${shared_vars[@]}"
    "IDP_CLIENT_ID=$LINK_IDP_CLIENT_ID"
    "LINK_MIN_SCORE=$LINK_MIN_SCORE"
    "LINK_OVERWRITE=$LINK_OVERWRITE"
    "LINK_TRUST_RULES=$LINK_TRUST_RULES"
    "LINK_CONCURRENCY=$LINK_CONCURRENCY"
    "LINK_DRY_RUN=$LINK_DRY_RUN"
    "LINK_TOPIC=$LINK_TOPIC"
    "REVIEW_MIN_SCORE=$REVIEW_MIN_SCORE"
    "REVIEW_MAX_EVENTS=$REVIEW_MAX_EVENTS"
    "REVIEW_TOPIC=$REVIEW_TOPIC"
    "THREADS=$LINK_INSTANCE_CONCURRENCY"
  )
  [[ -z ${LINK_PIPELINES:-} ]] || link_vars+=("LINK_PIPELINES=$LINK_PIPELINES") # unset: every pipeline
  [[ $TRACING == false ]] || link_vars+=("OTEL_SERVICE_NAME=$link_name")
fi
review_vars=()
if [[ $REVIEW == true ]]; then
  review_vars=(
    "${shared_vars[@]}"
    "IDP_CLIENT_ID=$REVIEW_IDP_CLIENT_ID"
    "REVIEW_TOPIC=$REVIEW_TOPIC"
    "THREADS=$REVIEW_INSTANCE_CONCURRENCY"
  )
  [[ $TRACING == false ]] || review_vars+=("OTEL_SERVICE_NAME=$review_name")
fi
optional_vars=(CDF_CLUSTER CDF_URL IDP_SCOPES IDP_AUDIENCE)
managed=" ${env_vars[*]%%=*} ${optional_vars[*]} LINK_MIN_SCORE LINK_OVERWRITE LINK_CONCURRENCY LINK_PIPELINES"
managed+=" LINK_DRY_RUN LINK_TOPIC LINK_TRUST_RULES REVIEW_MIN_SCORE REVIEW_MAX_EVENTS REVIEW_TOPIC"
managed+=" OTEL_TRACES_EXPORTER OTEL_SERVICE_NAME "
for optional in "${optional_vars[@]}"; do
  if [[ -n ${!optional:-} ]]; then
    env_vars+=("$optional=${!optional}")
    ((${#link_vars[@]} == 0)) || link_vars+=("$optional=${!optional}")
    ((${#review_vars[@]} == 0)) || review_vars+=("$optional=${!optional}")
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
    ((${#link_vars[@]} == 0)) || link_vars+=("$pair")
    ((${#review_vars[@]} == 0)) || review_vars+=("$pair")
  done
fi
for pair in "${env_vars[@]}" "${link_vars[@]}" "${review_vars[@]}"; do
  [[ $pair != *'|'* ]] || die "${pair%%=*} must not contain '|'"
done
env_flag() { # env_flag PAIR...: the pairs as one --set-env-vars value
  local IFS='|'
  printf '^|^%s' "$*"
}

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

read_secret() { # read_secret VAR PROMPT: VAR from the environment, else a line of stdin (silently at a terminal)
  if [[ -z ${!1+set} ]]; then
    if [[ -t 0 ]]; then
      read -r -s -p "$2 (Enter keeps the stored one): " "$1" || true
      printf '\n' >&2
    else
      IFS= read -r "$1" || true
    fi
  fi
  export -n "${1?}" # gcloud gets it on stdin only
}

keeps_secret() { # keeps_secret VAR SECRET: an empty VAR keeps SECRET's latest version, which must exist
  [[ -n ${!1} ]] || gcloud secrets versions describe latest --secret="$2" --project="$project" >/dev/null 2>&1 ||
    die "$1 is required: secret $2 has no version to keep"
}

if ((!dry_run)); then
  command -v gcloud >/dev/null || die "gcloud is not installed (or use --dry-run)"
  read_secret IDP_CLIENT_SECRET 'IDP client secret'
  keeps_secret IDP_CLIENT_SECRET "$secret"
  if [[ $LINK == true ]]; then
    read_secret LINK_IDP_CLIENT_SECRET "The link's IDP client secret"
    keeps_secret LINK_IDP_CLIENT_SECRET "$link_secret"
  fi
  if [[ $REVIEW == true ]]; then
    read_secret REVIEW_IDP_CLIENT_SECRET "The review's IDP client secret"
    keeps_secret REVIEW_IDP_CLIENT_SECRET "$review_secret"
  fi
  # Eventarc or not is fixed when a function is created: switching needs the function deleted first.
  if deployed=$(gcloud functions describe "$name" --gen2 --project="$project" --region="$REGION" \
    --format='value(eventTrigger.trigger)' 2>/dev/null); then
    if [[ $TRIGGER == push && -n $deployed ]]; then
      die "function $name has an Eventarc trigger; for TRIGGER=push delete it first (gcloud functions delete $name --gen2 --region=$REGION), or keep TRIGGER=eventarc"
    elif [[ $TRIGGER == eventarc && -z $deployed ]]; then
      die "function $name has no Eventarc trigger; for TRIGGER=eventarc delete it first (gcloud functions delete $name --gen2 --region=$REGION), or keep TRIGGER=push"
    fi
  fi
fi

lookup project_number PROJECT_NUMBER gcloud projects describe "$project" --format='value(projectNumber)'
pubsub_agent=serviceAccount:service-$project_number@gcp-sa-pubsub.iam.gserviceaccount.com

# --- resources ------------------------------------------------------------------

apis=(artifactregistry cloudbuild cloudfunctions cloudscheduler eventarc iam pubsub run secretmanager)
[[ $TRACING == false ]] || apis+=(cloudtrace)
run gcloud services enable "${apis[@]/%/.googleapis.com}" --project="$project"

kms_flags=()
[[ -z ${KMS_KEY_NAME:-} ]] || kms_flags=(--topic-encryption-key="$KMS_KEY_NAME")
topics=("$trigger_topic" "$events_topic" "$errors_topic" "$dead_letter_topic")
dead_letters=("$dead_letter_topic")
if [[ $LINK == true ]]; then
  topics+=("$link_dead_letter") dead_letters+=("$link_dead_letter")
fi
if [[ $REVIEW == true ]]; then
  topics+=("$decisions_topic" "$review_dead_letter") dead_letters+=("$review_dead_letter")
fi
for topic in "${topics[@]}"; do
  if exists gcloud pubsub topics describe "$topic" --project="$project"; then
    ((${#kms_flags[@]} == 0)) || run gcloud pubsub topics update "$topic" --project="$project" "${kms_flags[@]}"
  else
    run gcloud pubsub topics create "$topic" --project="$project" "${kms_flags[@]}"
  fi
done
# Keep dead-lettered messages for 7 days (a subscription of the same name on each dead-letter topic).
for topic in "${dead_letters[@]}"; do
  exists gcloud pubsub subscriptions describe "$topic" --project="$project" ||
    run gcloud pubsub subscriptions create "$topic" --project="$project" \
      --topic="$topic" --message-retention-duration=7d --expiration-period=never
done

account() { # account EMAIL ID DESCRIPTION: the service account, created when missing
  exists gcloud iam service-accounts describe "$1" --project="$project" ||
    run gcloud iam service-accounts create "$2" --project="$project" --display-name="$3"
}
account "$sa_email" "$name" "matchrelay function $name"
((!pushes)) || account "$invoker_email" "${invoker_email%%@*}" "matchrelay push invoker $name"
[[ $LINK == false ]] || account "$link_email" "${link_email%%@*}" "matchrelay link $name"
[[ $REVIEW == false ]] || account "$review_email" "${review_email%%@*}" "matchrelay review $name"

# The function's identity: publisher on its two topics and on the trigger topic (continuation and sweep
# triggers); with Eventarc, event receiver too.
for topic in "$events_topic" "$errors_topic" "$trigger_topic"; do
  bind gcloud pubsub topics add-iam-policy-binding "$topic" --project="$project" \
    --member="$sa_member" --role=roles/pubsub.publisher
done
if [[ $TRIGGER == eventarc ]]; then
  bind gcloud projects add-iam-policy-binding "$project" --member="$sa_member" \
    --role=roles/eventarc.eventReceiver --condition=None
fi
# The Pub/Sub service agent moves failed messages to the dead-letter topics.
for topic in "${dead_letters[@]}"; do
  bind gcloud pubsub topics add-iam-policy-binding "$topic" --project="$project" \
    --member="$pubsub_agent" --role=roles/pubsub.publisher
done
if [[ $TRACING == true ]]; then
  tracers=("$sa_member")
  [[ $LINK == false ]] || tracers+=("serviceAccount:$link_email")
  [[ $REVIEW == false ]] || tracers+=("serviceAccount:$review_email")
  for member in "${tracers[@]}"; do
    bind gcloud projects add-iam-policy-binding "$project" --member="$member" \
      --role=roles/cloudtrace.agent --condition=None
  done
fi
# Pub/Sub's service agent mints the push requests' OIDC tokens as the invoker.
if ((pushes)); then
  bind gcloud iam service-accounts add-iam-policy-binding "$invoker_email" --project="$project" \
    --member="$pubsub_agent" --role=roles/iam.serviceAccountTokenCreator
fi

store_secret() { # store_secret SECRET VAR MEMBER: the secret, VAR's value as a new version, MEMBER may read it
  exists gcloud secrets describe "$1" --project="$project" ||
    run gcloud secrets create "$1" --project="$project" --replication-policy=automatic
  if ((dry_run)); then
    show gcloud secrets versions add "$1" --project="$project" --data-file=-
    printf '# (the value of %s on stdin)\n' "$2"
  elif [[ -n ${!2} ]]; then
    printf '%s' "${!2}" | gcloud secrets versions add "$1" --project="$project" --data-file=-
  fi
  bind gcloud secrets add-iam-policy-binding "$1" --project="$project" \
    --member="$3" --role=roles/secretmanager.secretAccessor
}
store_secret "$secret" IDP_CLIENT_SECRET "$sa_member"

# The relay: an HTTP function for push, an Eventarc trigger otherwise.
delivery=(--trigger-http --no-allow-unauthenticated)
if [[ $TRIGGER == eventarc ]]; then
  delivery=(--trigger-topic="$trigger_topic" --trigger-location="$REGION" --retry --trigger-service-account="$sa_email")
fi
run gcloud functions deploy "$name" --gen2 --project="$project" --region="$REGION" \
  --runtime="$runtime" --source="$source_dir" --ignore-file="$script_dir/.gcloudignore" \
  --entry-point=on_run_message "${delivery[@]}" \
  --timeout="${TIMEOUT_S}s" --memory="$memory" --cpu=1 --concurrency="$CONCURRENCY" --max-instances="$MAX_INSTANCES" \
  --ingress-settings=internal-only --service-account="$sa_email" \
  --set-env-vars="$(env_flag "${env_vars[@]}")" --set-secrets="IDP_CLIENT_SECRET=$secret:latest" --quiet

push_to() { # push_to FUNCTION SUBSCRIPTION TOPIC DEAD_LETTER_TOPIC [FLAG...]: FUNCTION's push subscription, as
  # push.tf; the FLAGs (a filter, message ordering) are fixed when a subscription is created, so given only then
  local url='' settings placeholder=${1^^}
  bind gcloud run services add-iam-policy-binding "$1" --project="$project" --region="$REGION" \
    --member="serviceAccount:$invoker_email" --role=roles/run.invoker
  lookup url "${placeholder//-/_}_URL" gcloud functions describe "$1" --gen2 --project="$project" --region="$REGION" \
    --format='value(serviceConfig.uri)'
  settings=(--project="$project" --push-endpoint="$url" --push-auth-service-account="$invoker_email"
    --push-auth-token-audience="$url" --ack-deadline=600 --min-retry-delay=10s --max-retry-delay=600s
    --dead-letter-topic="projects/$project/topics/$4" --max-delivery-attempts="$MAX_DELIVERY_ATTEMPTS"
    --message-retention-duration=1d --expiration-period=never)
  if exists gcloud pubsub subscriptions describe "$2" --project="$project"; then
    run gcloud pubsub subscriptions update "$2" "${settings[@]}"
  else
    run gcloud pubsub subscriptions create "$2" --topic="$3" "${settings[@]}" "${@:5}"
  fi
  # The Pub/Sub service agent acks what it moves to the dead-letter topic.
  bind gcloud pubsub subscriptions add-iam-policy-binding "$2" --project="$project" \
    --member="$pubsub_agent" --role=roles/pubsub.subscriber
}

if [[ $TRIGGER == push ]]; then
  push_to "$name" "$push_subscription" "$trigger_topic" "$dead_letter_topic"
else
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
fi

# The link: its own account, secret and function, and a push subscription that takes only run.completed events.
if [[ $LINK == true ]]; then
  bind gcloud pubsub topics add-iam-policy-binding "$LINK_TOPIC" \
    --member="serviceAccount:$link_email" --role=roles/pubsub.publisher
  store_secret "$link_secret" LINK_IDP_CLIENT_SECRET "serviceAccount:$link_email"
  run gcloud functions deploy "$link_name" --gen2 --project="$project" --region="$REGION" \
    --runtime="$runtime" --source="$source_dir" --ignore-file="$script_dir/.gcloudignore" \
    --entry-point=on_run_completed --trigger-http --no-allow-unauthenticated \
    --timeout="${TIMEOUT_S}s" --memory="$memory" --cpu=1 --concurrency="$LINK_INSTANCE_CONCURRENCY" \
    --max-instances="$LINK_MAX_INSTANCES" --ingress-settings=internal-only --service-account="$link_email" \
    --set-env-vars="$(env_flag "${link_vars[@]}")" --set-secrets="IDP_CLIENT_SECRET=$link_secret:latest" --quiet
  push_to "$link_name" "$link_name" "$events_topic" "$link_dead_letter" \
    --message-filter='attributes.ce-type = "com.cognite.entitymatching.run.completed"'
  # link.review events go to REVIEW_TOPIC, when it is not LINK_TOPIC.
  if [[ $REVIEW_TOPIC != "$LINK_TOPIC" ]]; then
    bind gcloud pubsub topics add-iam-policy-binding "$REVIEW_TOPIC" \
      --member="serviceAccount:$link_email" --role=roles/pubsub.publisher
  fi
fi

# The review: its own account, secret and function, and a push subscription on the decisions topic that delivers
# the messages of one ordering key ({project}/{pipelineId}) one at a time, in order.
if [[ $REVIEW == true ]]; then
  bind gcloud pubsub topics add-iam-policy-binding "$REVIEW_TOPIC" \
    --member="serviceAccount:$review_email" --role=roles/pubsub.publisher
  store_secret "$review_secret" REVIEW_IDP_CLIENT_SECRET "serviceAccount:$review_email"
  run gcloud functions deploy "$review_name" --gen2 --project="$project" --region="$REGION" \
    --runtime="$runtime" --source="$source_dir" --ignore-file="$script_dir/.gcloudignore" \
    --entry-point=on_review_decision --trigger-http --no-allow-unauthenticated \
    --timeout="${TIMEOUT_S}s" --memory="$memory" --cpu=1 --concurrency="$REVIEW_INSTANCE_CONCURRENCY" \
    --max-instances="$REVIEW_MAX_INSTANCES" --ingress-settings=internal-only --service-account="$review_email" \
    --set-env-vars="$(env_flag "${review_vars[@]}")" --set-secrets="IDP_CLIENT_SECRET=$review_secret:latest" --quiet
  push_to "$review_name" "$review_name" "$decisions_topic" "$review_dead_letter" --enable-message-ordering
fi

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
