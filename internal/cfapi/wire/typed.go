package wire

import "encoding/json"

// Typed views of the documented binding types, for Binding.Decode. Members
// follow the API's JSON names; optional members are omitted when empty.

// AI binds Workers AI.
type AI struct {
	Name string `json:"name"`
}

// AISearch binds an AI Search instance. Namespace defaults to "default".
type AISearch struct {
	Name         string `json:"name"`
	InstanceName string `json:"instance_name"`
	Namespace    string `json:"namespace,omitempty"`
}

// AISearchNamespace binds every instance of an AI Search namespace.
type AISearchNamespace struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
}

// AnalyticsEngine binds an Analytics Engine dataset.
type AnalyticsEngine struct {
	Name    string `json:"name"`
	Dataset string `json:"dataset"`
}

// Assets binds the script's static assets.
type Assets struct {
	Name string `json:"name"`
}

// Browser binds Browser Rendering.
type Browser struct {
	Name string `json:"name"`
}

// D1 binds a D1 database. The API now names the id DatabaseID; ID is the
// deprecated spelling that wrangler still sends. Use DatabaseIDOrID.
type D1 struct {
	Name       string `json:"name"`
	DatabaseID string `json:"database_id,omitempty"`
	ID         string `json:"id,omitempty"`
}

// DatabaseIDOrID returns the database id whichever member carries it.
func (d D1) DatabaseIDOrID() string {
	if d.DatabaseID != "" {
		return d.DatabaseID
	}
	return d.ID
}

// DataBlob binds a data part of a service-worker upload.
type DataBlob struct {
	Name string `json:"name"`
	Part string `json:"part"`
}

// DispatchNamespace binds a Workers for Platforms dispatch namespace.
type DispatchNamespace struct {
	Name      string    `json:"name"`
	Namespace string    `json:"namespace"`
	Outbound  *Outbound `json:"outbound,omitempty"`
}

// Outbound is the outbound Worker of a dispatch namespace binding.
type Outbound struct {
	Params []struct {
		Name string `json:"name"`
	} `json:"params,omitempty"`
	Worker *struct {
		Service     string `json:"service,omitempty"`
		Environment string `json:"environment,omitempty"`
		Entrypoint  string `json:"entrypoint,omitempty"`
	} `json:"worker,omitempty"`
}

// DurableObjectNamespace binds a Durable Object class.
type DurableObjectNamespace struct {
	Name              string `json:"name"`
	ClassName         string `json:"class_name,omitempty"`
	ScriptName        string `json:"script_name,omitempty"`
	Environment       string `json:"environment,omitempty"`
	NamespaceID       string `json:"namespace_id,omitempty"`
	DispatchNamespace string `json:"dispatch_namespace,omitempty"`
}

// Hyperdrive binds a Hyperdrive configuration.
type Hyperdrive struct {
	Name string `json:"name"`
	ID   string `json:"id"`
}

// InheritBinding carries a binding over from a previous version.
type InheritBinding struct {
	Name      string `json:"name"`
	OldName   string `json:"old_name,omitempty"`
	VersionID string `json:"version_id,omitempty"`
}

// Images binds Cloudflare Images.
type Images struct {
	Name string `json:"name"`
}

// JSONVar is a json variable; JSON holds the value itself, not a string.
type JSONVar struct {
	Name string          `json:"name"`
	JSON json.RawMessage `json:"json"`
}

// KVNamespace binds a KV namespace.
type KVNamespace struct {
	Name        string `json:"name"`
	NamespaceID string `json:"namespace_id"`
}

// Media binds Media Transformations.
type Media struct {
	Name string `json:"name"`
}

// MTLSCertificate binds an mTLS client certificate.
type MTLSCertificate struct {
	Name          string `json:"name"`
	CertificateID string `json:"certificate_id"`
}

// PlainText is a plain text variable.
type PlainText struct {
	Name string `json:"name"`
	Text string `json:"text"`
}

// Pipelines binds a Pipeline.
type Pipelines struct {
	Name     string `json:"name"`
	Pipeline string `json:"pipeline"`
}

// Queue binds a Queue producer.
type Queue struct {
	Name          string   `json:"name"`
	QueueName     string   `json:"queue_name"`
	DeliveryDelay *float64 `json:"delivery_delay,omitempty"`
}

// Ratelimit binds a rate limit namespace.
type Ratelimit struct {
	Name        string `json:"name"`
	NamespaceID string `json:"namespace_id"`
	Simple      struct {
		Limit             float64  `json:"limit"`
		Period            float64  `json:"period"`
		MitigationTimeout *float64 `json:"mitigation_timeout,omitempty"`
	} `json:"simple"`
}

// R2Bucket binds an R2 bucket. Jurisdiction is "", "eu", "fedramp" or
// "fedramp-high".
type R2Bucket struct {
	Name         string `json:"name"`
	BucketName   string `json:"bucket_name"`
	Jurisdiction string `json:"jurisdiction,omitempty"`
}

// SecretText is a secret variable. Text is write-only: GET omits it.
type SecretText struct {
	Name string `json:"name"`
	Text string `json:"text,omitempty"`
}

// SendEmail binds Email Routing's send_email.
type SendEmail struct {
	Name                        string   `json:"name"`
	AllowedDestinationAddresses []string `json:"allowed_destination_addresses,omitempty"`
	AllowedSenderAddresses      []string `json:"allowed_sender_addresses,omitempty"`
	DestinationAddress          string   `json:"destination_address,omitempty"`
}

// Service binds another Worker. Environment defaults to "production".
type Service struct {
	Name        string          `json:"name"`
	Service     string          `json:"service"`
	Environment string          `json:"environment,omitempty"`
	Entrypoint  string          `json:"entrypoint,omitempty"`
	Props       json.RawMessage `json:"props,omitempty"`
}

// TextBlob binds a text part of a service-worker upload.
type TextBlob struct {
	Name string `json:"name"`
	Part string `json:"part"`
}

// Vectorize binds a Vectorize index.
type Vectorize struct {
	Name      string `json:"name"`
	IndexName string `json:"index_name"`
}

// VersionMetadata binds the version metadata.
type VersionMetadata struct {
	Name string `json:"name"`
}

// SecretsStoreSecret binds a secret of a Secrets Store.
type SecretsStoreSecret struct {
	Name       string `json:"name"`
	StoreID    string `json:"store_id"`
	SecretName string `json:"secret_name"`
}

// Flagship binds a Flagship app.
type Flagship struct {
	Name  string `json:"name"`
	AppID string `json:"app_id"`
}

// SecretKey binds a WebCrypto key. KeyBase64 and KeyJWK are write-only.
type SecretKey struct {
	Name      string          `json:"name"`
	Algorithm json.RawMessage `json:"algorithm"`
	Format    string          `json:"format"`
	Usages    []string        `json:"usages"`
	KeyBase64 string          `json:"key_base64,omitempty"`
	KeyJWK    json.RawMessage `json:"key_jwk,omitempty"`
}

// Workflow binds a Workflow.
type Workflow struct {
	Name         string `json:"name"`
	WorkflowName string `json:"workflow_name"`
	ClassName    string `json:"class_name,omitempty"`
	ScriptName   string `json:"script_name,omitempty"`
}

// WasmModule binds a WebAssembly part of a service-worker upload.
type WasmModule struct {
	Name string `json:"name"`
	Part string `json:"part"`
}

// VPCService binds a VPC service.
type VPCService struct {
	Name      string `json:"name"`
	ServiceID string `json:"service_id"`
}

// VPCNetwork binds a VPC network or tunnel.
type VPCNetwork struct {
	Name      string `json:"name"`
	NetworkID string `json:"network_id,omitempty"`
	TunnelID  string `json:"tunnel_id,omitempty"`
}
