package event

// Reason says why an event was dead-lettered. It is the "reason" of a
// dead-letter record and the reason label of reconciler_dead_letters_total,
// so its values are few and fixed: every one is listed in Reasons.
type Reason string

// Dead-letter reasons.
const (
	// Bad input, found when the event is decoded.
	ReasonInvalidJSON     Reason = "invalid_json"
	ReasonTooLarge        Reason = "too_large"
	ReasonTooDeep         Reason = "too_deep"
	ReasonSchema          Reason = "unsupported_schema"
	ReasonMissingField    Reason = "missing_field"
	ReasonInvalidField    Reason = "invalid_field"
	ReasonInvalidBinding  Reason = "invalid_binding"
	ReasonSubjectMismatch Reason = "subject_mismatch"
	// Failures of a reconcile that retrying cannot fix.
	ReasonNotFound       Reason = "not_found"
	ReasonAPIRejected    Reason = "api_rejected"
	ReasonInvalidDesired Reason = "invalid_desired_state"
	// ReasonForbiddenAccount: the API refuses the script's account (403 or
	// code 10000) while the token itself verifies: the account is outside
	// the token's scope.
	ReasonForbiddenAccount Reason = "forbidden_account"
	// Failures that kept coming back until the deliveries ran out.
	ReasonMaxDeliveries Reason = "max_deliveries"
	// ReasonBadResponse: the deliveries ran out while the API's answers
	// were not its JSON envelope (a 2xx page from a proxy in front of it):
	// the API neither accepted nor refused the change.
	ReasonBadResponse Reason = "bad_response"
	ReasonPanic       Reason = "panic"
)

// Reasons lists every Reason, for metrics to pre-create their series.
var Reasons = []Reason{
	ReasonInvalidJSON, ReasonTooLarge, ReasonSchema, ReasonMissingField, ReasonInvalidField,
	ReasonInvalidBinding, ReasonSubjectMismatch, ReasonNotFound, ReasonAPIRejected,
	ReasonInvalidDesired, ReasonMaxDeliveries, ReasonPanic, ReasonTooDeep, ReasonForbiddenAccount, ReasonBadResponse,
}

// ReasonLabels returns Reasons as strings.
func ReasonLabels() []string {
	out := make([]string, len(Reasons))
	for i, r := range Reasons {
		out[i] = string(r)
	}
	return out
}
