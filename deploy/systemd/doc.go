// Package systemd holds the systemd units of the three services
// (agentwatch-*.service) and the drop-in example for their secrets; its
// test runs systemd-analyze verify and security on them.
package systemd
