// Package baseline learns what normal looks like for one agent (or one
// peer group of agents) and scores how surprising a window of its
// behaviour is. It is pure: no I/O, no clock, no randomness; the window's
// start time is passed in.
package baseline
