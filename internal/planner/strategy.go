package planner

import "fmt"

// Strategy is how a change of bindings is written to the API.
type Strategy string

const (
	// StrategyNone is a plan's strategy when there is nothing to write. As a
	// requested strategy it means StrategyAuto.
	StrategyNone Strategy = ""
	// StrategyAuto lets the planner choose: StrategyScript when the change
	// needs a script upload (a part type or a rename), StrategySettings
	// otherwise.
	StrategyAuto Strategy = "auto"
	// StrategySettings is PATCH …/settings with one multipart part
	// "settings" holding {"bindings":[...]}: the full new set, where an
	// entry of only {type, name} keeps the current value.
	StrategySettings Strategy = "settings"
	// StrategyScript is a PUT of the script: metadata with the bindings and
	// keep_bindings, the module parts, and ?bindings_inherit=strict.
	StrategyScript Strategy = "script"
	// StrategyVersion is a POST of a new version (the same multipart body
	// as StrategyScript) followed by a deployment of it at 100%.
	StrategyVersion Strategy = "version"
)

// ParseStrategy parses a requested strategy: "" and "auto" give
// StrategyAuto; "settings", "script" and "version" give themselves; any
// other value is an error that names it.
func ParseStrategy(s string) (Strategy, error) {
	switch Strategy(s) {
	case StrategyNone, StrategyAuto:
		return StrategyAuto, nil
	case StrategySettings, StrategyScript, StrategyVersion:
		return Strategy(s), nil
	}
	return "", fmt.Errorf("planner: unknown strategy %q (want auto, settings, script or version)", s)
}

// name returns the strategy as plans show it: "none" for StrategyNone.
func (s Strategy) name() string {
	if s == StrategyNone {
		return "none"
	}
	return string(s)
}
