#!/bin/sh
# refuse-placeholders.sh NAME... -- COMMAND [ARG...]
#
# Starts COMMAND only if none of the environment variables NAME is unset,
# empty or a placeholder such as the `change-me-…` values of
# deploy/env.example. facmon refuses placeholders in its own secrets
# (docs/configuration.md, "Placeholder secrets"); this is the same rule, with
# the same pattern, for the secrets that only the database containers read,
# so that neither is initialised with a password from the example.
set -eu

# facmon.config.checks._PLACEHOLDERS; tests/deploy/test_compose.py checks
# that both give the same answer.
placeholder='^(change[-_ ]?me.*|changeit|secret|password|passw0rd|example|placeholder|todo|tbd|xxx+|default|admin|test|123456.*|your[-_ ].*|<.*>|\$\{.*\}|\.\.\.)$'

while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do
    value=$(printenv "$1" || true)
    if [ -z "$value" ] || printf '%s\n' "$value" | grep -Eiq -- "$placeholder"; then
        echo "$1 is unset or a placeholder: set a real secret in .env (docs/deployment.md)" >&2
        exit 1
    fi
    shift
done
[ "$#" -gt 1 ] || { echo "usage: refuse-placeholders.sh NAME... -- COMMAND [ARG...]" >&2; exit 2; }
shift
exec "$@"
