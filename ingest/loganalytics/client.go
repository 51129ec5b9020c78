package loganalytics

import (
	"fmt"
	"net/http"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/monitor/query/azlogs"
)

// cloudEndpoints are the per-cloud authority, query endpoint and audience.
// They are written out here rather than read from azcore's shared cloud
// variables so the source never depends on (or mutates) package state.
func cloudEndpoints(name string) (authority, endpoint, audience string) {
	switch name {
	case CloudChina:
		return "https://login.chinacloudapi.cn/", "https://api.loganalytics.azure.cn", "https://api.loganalytics.azure.cn"
	case CloudGovernment:
		return "https://login.microsoftonline.us/", "https://api.loganalytics.us", "https://api.loganalytics.us"
	default:
		return "https://login.microsoftonline.com/", "https://api.loganalytics.io", "https://api.loganalytics.io"
	}
}

// cloudConfig builds the azcore cloud configuration from the config,
// applying the endpoint, audience and authority overrides.
func (c Config) cloudConfig() cloud.Configuration {
	authority, endpoint, audience := cloudEndpoints(c.Cloud)
	if c.Credential.AuthorityHost != "" {
		authority = c.Credential.AuthorityHost
	}
	if c.Endpoint != "" {
		endpoint = c.Endpoint
	}
	if c.Audience != "" {
		audience = c.Audience
	}
	return cloud.Configuration{
		ActiveDirectoryAuthorityHost: authority,
		Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
			azlogs.ServiceName: {Endpoint: endpoint, Audience: audience},
		},
	}
}

// clientOptions returns the azcore options shared by the credential and
// the query client. The SDK's own retry policy keeps handling transient
// 5xx and network errors, but 429 is left to the source so that it can
// honour Retry-After per table and record the throttling.
func clientOptions(cc cloud.Configuration, transport policy.Transporter) azcore.ClientOptions {
	return azcore.ClientOptions{
		Cloud:     cc,
		Transport: transport,
		Retry: policy.RetryOptions{
			StatusCodes: []int{
				http.StatusRequestTimeout,
				http.StatusInternalServerError,
				http.StatusBadGateway,
				http.StatusServiceUnavailable,
				http.StatusGatewayTimeout,
			},
		},
		Telemetry: policy.TelemetryOptions{ApplicationID: "custody"},
	}
}

// newCredential builds the azidentity credential the config names.
func newCredential(cfg CredentialConfig, opts azcore.ClientOptions) (azcore.TokenCredential, error) {
	switch cfg.Kind {
	case CredentialClientSecret:
		cred, err := azidentity.NewClientSecretCredential(cfg.TenantID, cfg.ClientID, cfg.ClientSecret.Reveal(),
			&azidentity.ClientSecretCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: cfg.DisableInstanceDiscovery})
		if err != nil {
			return nil, fmt.Errorf("client secret credential: %w", err)
		}
		return cred, nil
	case CredentialWorkloadIdentity:
		cred, err := azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{
			ClientOptions: opts, TenantID: cfg.TenantID, ClientID: cfg.ClientID, TokenFilePath: cfg.TokenFile,
			DisableInstanceDiscovery: cfg.DisableInstanceDiscovery,
		})
		if err != nil {
			return nil, fmt.Errorf("workload identity credential: %w", err)
		}
		return cred, nil
	case CredentialManagedIdentity:
		o := &azidentity.ManagedIdentityCredentialOptions{ClientOptions: opts}
		if cfg.ClientID != "" {
			o.ID = azidentity.ClientID(cfg.ClientID)
		}
		cred, err := azidentity.NewManagedIdentityCredential(o)
		if err != nil {
			return nil, fmt.Errorf("managed identity credential: %w", err)
		}
		return cred, nil
	case CredentialAzureCLI:
		cred, err := azidentity.NewAzureCLICredential(&azidentity.AzureCLICredentialOptions{TenantID: cfg.TenantID})
		if err != nil {
			return nil, fmt.Errorf("azure cli credential: %w", err)
		}
		return cred, nil
	}
	return nil, fmt.Errorf("credential.kind: %q is not supported", cfg.Kind)
}
