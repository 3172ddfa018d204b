// Package chartcheck validates the Helm chart in ../agentwatch offline, in
// its own Go module so that Helm and the Kubernetes API types stay out of
// agentwatch's go.mod: `helm lint` and `helm template` through Helm's own
// packages, then strict decoding of every rendered object into the
// k8s.io/api types (an unknown or misspelt field fails), then the checks
// that tie the objects together. Run it with `make chart-check`.
package chartcheck
