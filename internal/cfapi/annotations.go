package cfapi

// Annotation keys the API reference lists for requests. workers/message
// and workers/tag are the reconciler's; workers/triggered_by appears only in
// answers, so the API sets it, and a request never carries it.
const (
	AnnotationMessage = "workers/message"
	AnnotationTag     = "workers/tag"
)

// Limits of annotations in the API reference: a longer workers/message is
// truncated by the API, a longer workers/tag is refused.
const (
	MaxAnnotationMessage = 1000
	MaxAnnotationTag     = 100
)

// annotationsKind names the request an annotations member belongs to.
type annotationsKind int

const (
	annotationsUpload     annotationsKind = iota // script PUT: message, tag
	annotationsVersion                           // version upload: message, tag (and alias, unused)
	annotationsDeployment                        // deployment: message only
)

// specAnnotations returns the annotations of ann that the API reference
// lists for the request kind on ref, each within its limit: none for a
// dispatch namespace script (the reference's dispatch settings have no
// annotations, and its versions and deployments are not in it), message
// and tag on an ordinary Worker's uploads and versions, message alone on
// its deployments. Other keys (workers/triggered_by, ...) are dropped; an
// empty value is not sent. A tag over MaxAnnotationTag bytes is cut so
// the request is not refused for it.
func specAnnotations(ann map[string]string, ref ScriptRef, kind annotationsKind) map[string]string {
	if ref.Dispatch() || len(ann) == 0 {
		return nil
	}
	out := map[string]string{}
	if m := ann[AnnotationMessage]; m != "" {
		out[AnnotationMessage] = Truncate(m, MaxAnnotationMessage)
	}
	if t := ann[AnnotationTag]; t != "" && kind != annotationsDeployment {
		out[AnnotationTag] = Truncate(t, MaxAnnotationTag)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
