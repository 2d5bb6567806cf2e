#!/bin/sh
# The chassis of a rig machine, for ipmi_sim's `chassis_control` (OpenIPMI's extcmd
# protocol): `bmc-chassis.sh NAMESPACE START-SCRIPT get power` prints power:1 while
# any process lives in the machine's namespace, power:0 otherwise;
# `… set power "0"` is the power cut: SIGKILL to every process in the namespace,
# repeated until none is left; `… set power "1"` boots the machine: START-SCRIPT runs
# inside the namespace, detached, its output in START-SCRIPT.log.
ns="$1"; start="$2"; op="$3"; shift 3
pids() { ip netns pids "$ns" 2>/dev/null; }
case "$op" in
  get)
    for parm in "$@"; do
      case "$parm" in
        power) if [ -n "$(pids)" ]; then echo "power:1"; else echo "power:0"; fi ;;
      esac
    done ;;
  set)
    while [ $# -ge 2 ]; do
      parm="$1"; val=$(echo "$2" | tr -d '"'); shift 2
      [ "$parm" = power ] || continue
      if [ "$val" = 0 ]; then
        i=0
        while [ -n "$(pids)" ] && [ $i -lt 100 ]; do
          pids | xargs -r kill -9 2>/dev/null
          i=$((i + 1))
          sleep 0.02
        done
        [ -z "$(pids)" ] || exit 1
      elif [ -z "$(pids)" ]; then
        setsid ip netns exec "$ns" "$start" >>"$start.log" 2>&1 </dev/null &
      fi
    done ;;
esac
exit 0
