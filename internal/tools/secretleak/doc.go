// Package secretleak holds the test that no secret reaches a log line, an
// error or `config show`: it loads the configuration with a known value
// for every secret, through every channel (the configuration file, a
// _file key, AGENTWATCH_* variables, flags and the *_env variables), then
// runs the setup paths of the responder, ingest and the detector and the
// responder's work with those secrets, and searches everything they wrote.
// It has no code of its own.
package secretleak
