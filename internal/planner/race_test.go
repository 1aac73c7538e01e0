//go:build race

package planner

// raceEnabled reports a build with the race detector, whose sync.Pool
// drops items at random, so allocation counts vary.
const raceEnabled = true
