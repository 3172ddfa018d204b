// Package opsfiles holds the tests of the operations files shipped in
// deploy/: the Prometheus alerting rules (deploy/prometheus) and the
// Grafana dashboard (deploy/grafana). They check that every metric those
// files query exists in the services' registries, so the files cannot
// drift from the code, that every alert links to its runbook entry, and
// that promtool accepts and unit-tests the rules.
package opsfiles
