package wire

import (
	"encoding/json"
	"errors"
	"slices"
	"sort"
)

// Binding types documented by the Cloudflare API (reference: Create Version,
// "bindings"). Types outside this list are carried through unchanged.
const (
	TypeAI                     = "ai"
	TypeAISearch               = "ai_search"
	TypeAISearchNamespace      = "ai_search_namespace"
	TypeAnalyticsEngine        = "analytics_engine"
	TypeAssets                 = "assets"
	TypeBrowser                = "browser"
	TypeD1                     = "d1"
	TypeDataBlob               = "data_blob"
	TypeDispatchNamespace      = "dispatch_namespace"
	TypeDurableObjectNamespace = "durable_object_namespace"
	TypeHyperdrive             = "hyperdrive"
	TypeInherit                = "inherit"
	TypeImages                 = "images"
	TypeJSON                   = "json"
	TypeKVNamespace            = "kv_namespace"
	TypeMedia                  = "media"
	TypeMTLSCertificate        = "mtls_certificate"
	TypePlainText              = "plain_text"
	TypePipelines              = "pipelines"
	TypeQueue                  = "queue"
	TypeRatelimit              = "ratelimit"
	TypeR2Bucket               = "r2_bucket"
	TypeSecretText             = "secret_text"
	TypeSendEmail              = "send_email"
	TypeService                = "service"
	TypeTextBlob               = "text_blob"
	TypeVectorize              = "vectorize"
	TypeVersionMetadata        = "version_metadata"
	TypeSecretsStoreSecret     = "secrets_store_secret"
	TypeFlagship               = "flagship"
	TypeSecretKey              = "secret_key"
	TypeWorkflow               = "workflow"
	TypeWasmModule             = "wasm_module"
	TypeVPCService             = "vpc_service"
	TypeVPCNetwork             = "vpc_network"
)

// KnownTypes returns every binding type this package models, sorted.
func KnownTypes() []string {
	out := make([]string, 0, len(specs))
	for t := range specs {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// IsKnownType reports whether typ is a binding type this package models.
func IsKnownType(typ string) bool { _, ok := specs[typ]; return ok }

// IsWriteOnlyType reports whether bindings of typ carry values that GET never
// returns (secret_text, secret_key).
func IsWriteOnlyType(typ string) bool { return typ == TypeSecretText || typ == TypeSecretKey }

// WriteOnlyTypes lists the types with write-only values, in the order
// wrangler sends them in keep_bindings.
func WriteOnlyTypes() []string { return []string{TypeSecretText, TypeSecretKey} }

// IsPartType reports whether bindings of typ name a multipart part of the
// script upload (wasm_module, text_blob, data_blob).
func IsPartType(typ string) bool {
	return typ == TypeWasmModule || typ == TypeTextBlob || typ == TypeDataBlob
}

// WriteOnlyFields returns the members of a binding of typ that the API never
// returns.
func WriteOnlyFields(typ string) []string {
	if sp, ok := specs[typ]; ok {
		return slices.Clone(sp.writeOnly)
	}
	return nil
}

type kind int

const (
	kindAny kind = iota
	kindString
	kindObject
	kindArray
	kindNumber
	kindBool
	kindStringArray
)

func (k kind) check(v json.RawMessage) error {
	// v is a valid JSON value (its binding was validated whole), so its
	// first byte tells its kind.
	if k == kindAny {
		return nil
	}
	if len(v) == 0 {
		return errors.New("must not be empty")
	}
	c := v[0]
	switch k {
	case kindString:
		if c != '"' {
			return errors.New("must be a string")
		}
	case kindObject:
		if c != '{' {
			return errors.New("must be an object")
		}
	case kindArray:
		if c != '[' {
			return errors.New("must be an array")
		}
	case kindNumber:
		if c != '-' && (c < '0' || c > '9') {
			return errors.New("must be a number")
		}
	case kindBool:
		if c != 't' && c != 'f' {
			return errors.New("must be a boolean")
		}
	case kindStringArray:
		var arr []string
		if c != '[' || json.Unmarshal(v, &arr) != nil {
			return errors.New("must be an array of strings")
		}
	}
	return nil
}

type fieldSpec struct {
	key      string
	kind     kind
	required bool
	enum     []string
	maxBytes int
}

type typeSpec struct {
	fields    []fieldSpec
	writeOnly []string
	// defaults are values the API fills in when a member is absent; they are
	// applied before comparing (docs/emulator.md, "Modelled as the real API behaves").
	defaults map[string]string // key -> canonical JSON
	// emptyAbsent lists members for which "" is the same as absent.
	emptyAbsent []string
	// serverFilled lists members that GET may add on its own; they are
	// compared only when the desired binding sets them.
	serverFilled []string
	// aliases maps a deprecated member to its current name (d1 id).
	aliases map[string]string
	// check runs type-specific rules; it returns the field and message of
	// the first problem, or an empty message.
	check func(fields map[string]json.RawMessage, mode ValidateMode) (field, msg string)
}

func req(key string, k kind) fieldSpec { return fieldSpec{key: key, kind: k, required: true} }
func opt(key string, k kind) fieldSpec { return fieldSpec{key: key, kind: k} }

// specs describes every documented binding type: its members, which are
// required on upload, which are write-only, and the defaults the API fills
// in. It is read-only.
var specs = map[string]typeSpec{
	TypeAI: {},
	TypeAISearch: {
		fields:   []fieldSpec{req("instance_name", kindString), opt("namespace", kindString)},
		defaults: map[string]string{"namespace": `"default"`},
	},
	TypeAISearchNamespace: {fields: []fieldSpec{req("namespace", kindString)}},
	TypeAnalyticsEngine:   {fields: []fieldSpec{req("dataset", kindString)}},
	TypeAssets:            {},
	TypeBrowser:           {},
	TypeD1: {
		fields:  []fieldSpec{opt("database_id", kindString), opt("id", kindString)},
		aliases: map[string]string{"id": "database_id"},
		check: func(f map[string]json.RawMessage, _ ValidateMode) (string, string) {
			if !present(f, "database_id") && !present(f, "id") {
				return "database_id", "is required for type d1 (or its deprecated alias \"id\")"
			}
			return "", ""
		},
	},
	TypeDataBlob: {fields: []fieldSpec{req("part", kindString)}},
	TypeDispatchNamespace: {
		fields: []fieldSpec{req("namespace", kindString), opt("outbound", kindObject)},
	},
	TypeDurableObjectNamespace: {
		fields: []fieldSpec{opt("class_name", kindString), opt("script_name", kindString),
			opt("environment", kindString), opt("namespace_id", kindString), opt("dispatch_namespace", kindString)},
		serverFilled: []string{"class_name", "namespace_id"},
		check: func(f map[string]json.RawMessage, _ ValidateMode) (string, string) {
			if !present(f, "class_name") && !present(f, "namespace_id") {
				return "class_name", "is required for type durable_object_namespace (or namespace_id)"
			}
			return "", ""
		},
	},
	TypeHyperdrive: {fields: []fieldSpec{req("id", kindString)}},
	TypeInherit:    {fields: []fieldSpec{opt("old_name", kindString), opt("version_id", kindString)}},
	TypeImages:     {},
	TypeJSON:       {fields: []fieldSpec{req("json", kindAny)}},
	TypeKVNamespace: {
		fields: []fieldSpec{req("namespace_id", kindString)},
	},
	TypeMedia:           {},
	TypeMTLSCertificate: {fields: []fieldSpec{req("certificate_id", kindString)}},
	TypePlainText: {
		fields: []fieldSpec{{key: "text", kind: kindString, required: true, maxBytes: MaxValueBytes}},
	},
	TypePipelines: {fields: []fieldSpec{req("pipeline", kindString)}},
	TypeQueue:     {fields: []fieldSpec{req("queue_name", kindString), opt("delivery_delay", kindNumber)}},
	TypeRatelimit: {
		fields: []fieldSpec{req("namespace_id", kindString), req("simple", kindObject)},
		check: func(f map[string]json.RawMessage, _ ValidateMode) (string, string) {
			var simple map[string]json.RawMessage
			if json.Unmarshal(f["simple"], &simple) != nil {
				return "simple", "must be an object"
			}
			for _, k := range []string{"limit", "period"} {
				if !present(simple, k) || kindNumber.check(simple[k]) != nil {
					return "simple." + k, "is required and must be a number"
				}
			}
			return "", ""
		},
	},
	TypeR2Bucket: {
		fields:      []fieldSpec{req("bucket_name", kindString), {key: "jurisdiction", kind: kindString, enum: []string{"", "eu", "fedramp", "fedramp-high"}}},
		emptyAbsent: []string{"jurisdiction"},
	},
	TypeSecretText: {
		fields:    []fieldSpec{{key: "text", kind: kindString, required: true, maxBytes: MaxValueBytes}},
		writeOnly: []string{"text"},
	},
	TypeSendEmail: {
		fields: []fieldSpec{opt("allowed_destination_addresses", kindStringArray),
			opt("allowed_sender_addresses", kindStringArray), opt("destination_address", kindString)},
	},
	TypeService: {
		fields:   []fieldSpec{req("service", kindString), opt("environment", kindString), opt("entrypoint", kindString)},
		defaults: map[string]string{"environment": `"production"`},
	},
	TypeTextBlob:        {fields: []fieldSpec{req("part", kindString)}},
	TypeVectorize:       {fields: []fieldSpec{req("index_name", kindString)}},
	TypeVersionMetadata: {},
	TypeSecretsStoreSecret: {
		fields: []fieldSpec{req("store_id", kindString), req("secret_name", kindString)},
	},
	TypeFlagship: {fields: []fieldSpec{{key: "app_id", kind: kindString, required: true, maxBytes: 128}}},
	TypeSecretKey: {
		fields: []fieldSpec{req("algorithm", kindAny),
			{key: "format", kind: kindString, required: true, enum: []string{"raw", "pkcs8", "spki", "jwk"}},
			req("usages", kindStringArray), opt("key_base64", kindString), opt("key_jwk", kindAny)},
		writeOnly: []string{"key_base64", "key_jwk"},
		check: func(f map[string]json.RawMessage, mode ValidateMode) (string, string) {
			var usages []string
			_ = json.Unmarshal(f["usages"], &usages)
			for _, u := range usages {
				if !slices.Contains([]string{"encrypt", "decrypt", "sign", "verify", "deriveKey", "deriveBits", "wrapKey", "unwrapKey"}, u) {
					return "usages", "unknown usage " + strconvQuote(u)
				}
			}
			if mode == ForRead {
				return "", ""
			}
			var format string
			_ = json.Unmarshal(f["format"], &format)
			if format == "jwk" {
				if !present(f, "key_jwk") {
					return "key_jwk", "is required when format is jwk"
				}
			} else if !present(f, "key_base64") {
				return "key_base64", "is required when format is " + format
			}
			return "", ""
		},
	},
	TypeWorkflow: {
		fields: []fieldSpec{req("workflow_name", kindString), opt("class_name", kindString), opt("script_name", kindString)},
	},
	TypeWasmModule: {fields: []fieldSpec{req("part", kindString)}},
	TypeVPCService: {fields: []fieldSpec{req("service_id", kindString)}},
	TypeVPCNetwork: {
		fields: []fieldSpec{opt("network_id", kindString), opt("tunnel_id", kindString)},
		check: func(f map[string]json.RawMessage, _ ValidateMode) (string, string) {
			n, t := present(f, "network_id"), present(f, "tunnel_id")
			switch {
			case n && t:
				return "tunnel_id", "network_id and tunnel_id are mutually exclusive"
			case !n && !t:
				return "network_id", "is required for type vpc_network (or tunnel_id)"
			}
			return "", ""
		},
	},
}

func present(f map[string]json.RawMessage, key string) bool {
	v, ok := f[key]
	return ok && string(v) != "null"
}

func strconvQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
