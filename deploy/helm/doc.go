// Package helm holds the Helm chart (agentwatch/) and, in chartcheck/, the
// Go module that lints, renders and strictly decodes it. The test here
// checks the chart's default configuration with the services' own loader,
// which the chart checker, a separate module, cannot import.
package helm
