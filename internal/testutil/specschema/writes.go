package specschema

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"regexp"
	"strings"
)

// Write is a write endpoint of the API whose request body (or one JSON
// part of its multipart body) the SDK types.
type Write struct {
	Method string
	// Path matches the end of the request's URL path (after any prefix
	// such as /client/v4).
	Path *regexp.Regexp
	// Part names the multipart part that holds the JSON; "" means the
	// body itself is JSON.
	Part string
	// Pkg and Type name the SDK's request type.
	Pkg, Type string
}

const (
	account  = `/accounts/[^/]+`
	script   = account + `/workers/scripts/[^/]+`
	dispatch = account + `/workers/dispatch/namespaces/[^/]+/scripts/[^/]+`
)

// Writes are the write endpoints the reconciler uses that the spec (SDK
// v7.9.0) has, with the SDK type of each body. The others (a dispatch
// script's versions and deployments) are in Cloudflare's developer docs
// only; docs/emulator.md lists them.
var Writes = []Write{
	{"PATCH", regexp.MustCompile(script + `/settings$`), "settings", "workers", "ScriptScriptAndVersionSettingEditParamsSettings"},
	{"PATCH", regexp.MustCompile(dispatch + `/settings$`), "settings", "workers_for_platforms", "DispatchNamespaceScriptSettingEditParamsSettings"},
	{"PUT", regexp.MustCompile(script + `$`), "metadata", "workers", "ScriptUpdateParamsMetadata"},
	{"PUT", regexp.MustCompile(dispatch + `$`), "metadata", "workers_for_platforms", "DispatchNamespaceScriptUpdateParamsMetadata"},
	{"POST", regexp.MustCompile(script + `/versions$`), "metadata", "workers", "ScriptVersionNewParamsMetadata"},
	{"POST", regexp.MustCompile(script + `/deployments$`), "", "workers", "DeploymentParam"},
	{"POST", regexp.MustCompile(account + `/workers/workers/[^/]+/versions$`), "", "workers", "VersionParam"},
}

// WriteFor returns the spec's write endpoint a request goes to, or nil when
// the spec does not have it.
func WriteFor(method, path string) *Write {
	for i := range Writes {
		if Writes[i].Method == method && Writes[i].Path.MatchString(path) {
			return &Writes[i]
		}
	}
	return nil
}

// JSON returns the JSON the SDK type describes: the body itself, or the
// named part of a multipart body. contentType may be "" when the caller
// did not keep the header; the boundary is then read from the body's first
// line.
func (w *Write) JSON(contentType string, body []byte) ([]byte, error) {
	if w.Part == "" {
		return body, nil
	}
	boundary := ""
	if _, params, ok := strings.Cut(contentType, "boundary="); ok {
		boundary = strings.Trim(strings.SplitN(params, ";", 2)[0], `"`)
	} else {
		first, err := bufio.NewReader(bytes.NewReader(body)).ReadString('\n')
		if err != nil || !strings.HasPrefix(first, "--") {
			return nil, fmt.Errorf("%s: not a multipart body", w.Type)
		}
		boundary = strings.TrimSpace(strings.TrimPrefix(first, "--"))
	}
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: no %q part", w.Type, w.Part)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: reading the multipart body: %w", w.Type, err)
		}
		if p.FormName() == w.Part {
			return io.ReadAll(p)
		}
	}
}

// sdkFaults are findings where the SDK, not the request, is at fault.
var sdkFaults = []struct{ match, why string }{
	// The beta versions file of SDK v7.9.0 gives the name
	// VersionBindingsWorkersBindingKindDispatchNamespaceOutboundParam to
	// the response type of one outbound parameter ({name}); the binding's
	// request member "outbound" is typed with it, a generator name clash.
	// The settings-edit and upload types of the same binding list
	// outbound.worker and outbound.params, as wrangler sends them.
	{"(dispatch_namespace).outbound.", "SDK v7.9.0 types the beta version's outbound with a response type of the same name (generator name clash)"},
}

// SDKFault says why a finding of Check is the SDK's fault rather than the
// request's, or "" when it is the request's. A test logs such findings
// instead of failing on them.
func SDKFault(finding string) string {
	for _, f := range sdkFaults {
		if strings.Contains(finding, f.match) {
			return f.why
		}
	}
	return ""
}
