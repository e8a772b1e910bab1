// Package agentpb holds the agent's gRPC API (package haroll.agent.v1),
// generated from agent.proto by `make proto`. Do not edit the *.pb.go files.
package agentpb
