"""Fault management in the OPNFV Doctor shape: monitors -> inspector -> actions -> notifier.

* monitors: agents' heartbeats and immediate reports (BFD sessions to their peers, their
  ovs-vswitchd), VIF link states, and the fault-report API for external monitors;
* `neutrino.faults.inspector`: correlates raw observations into faults (a host is down when
  its heartbeats stop, when its own agent reports its switch gone, or when at least two peers
  lose BFD to it: no single observer decides), deduplicated, with their affected resources;
* `neutrino.faults.actions`: what the control plane does about a fault (host and ports DOWN,
  gateway roles moved off a dead host; back on recovery);
* `neutrino.faults.notifier`: subscriptions (project-scoped, persisted), webhook delivery with
  retries, and the event stream; payloads are `neutrino.faults.events` (CloudEvents 1.0).
"""
