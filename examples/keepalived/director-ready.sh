#!/bin/sh
# Tells keepalived whether this machine's director may hold the sites' fronts.
#
# Usage: director-ready.sh ADMIN_URL SECRET_FILE STATE_FILE [CA_FILE]
#
# Every 200 ms asks the director at ADMIN_URL (its director.members address, https://
# with cluster.tls) for GET /v1/ready, and writes 0 to STATE_FILE while it answers 200
# (it runs and holds every site's route), 1 otherwise. keepalived reads the file the
# moment it changes (track_file, weight 0: non-zero is a fault) and gives the floating
# address up, or does not take it. keepalived's own vrrp_script runs at most once a
# second; this keeps a dead director's front down for at most about 0.5 s.
url=$1
secret=$2
state=$3
ca=$4
if [ -z "$url" ] || [ -z "$secret" ] || [ -z "$state" ]; then
  echo "usage: $0 ADMIN_URL SECRET_FILE STATE_FILE [CA_FILE]" >&2
  exit 2
fi
last=
while :; do
  if [ -n "$ca" ]; then
    set -- --cacert "$ca"
  else
    set --
  fi
  if curl -fs "$@" -m 0.3 -o /dev/null -H "Authorization: Bearer $(cat "$secret")" "$url/v1/ready"; then v=0; else v=1; fi
  if [ "$v" != "$last" ]; then
    echo "$v" >"$state.tmp" && mv "$state.tmp" "$state"
    last=$v
  fi
  sleep 0.2
done
