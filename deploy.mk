# Packaging and deployment (make package, make deploy, make destroy). docs/deploy.md walks through them.
# Uses the Makefile's $(BIN), $(STAMP) and $(STAGE); nothing here needs AWS but `preflight`, `deploy` and `destroy`.

PACKAGE_DIR ?= build/package
# The packaged stack's name on the CloudFormation path (docs/deploy.md, Path 1).
STACK_NAME ?= agentstream-$(STAGE)
# The Lambda runtime to package and deploy for, e.g. RUNTIME=python3.12; empty: infra/chalice_cli.py's
# DEFAULT_RUNTIME (python3.13). Not the Python running make (docs/deploy.md, "The Lambda runtime").
RUNTIME ?=
RUNTIME_ARG = $(if $(RUNTIME),--runtime $(RUNTIME))

.PHONY: package preflight deploy deploy-check destroy publish-page empty-page

## CloudFormation: $(PACKAGE_DIR)/sam.json, deployment.zip (app code) and layer-deployment.zip (dependencies).
package: $(STAMP)
	$(BIN)/python -m infra.stack package --stage $(STAGE) --out $(PACKAGE_DIR) $(RUNTIME_ARG)

## Before `aws cloudformation deploy` of $(STACK_NAME): stop if make deploy, or another stack, holds $(STAGE)'s names.
preflight: $(STAMP)
	$(BIN)/python -m infra.deploy preflight --stage $(STAGE) --stack-name $(STACK_NAME)

## Validate the deployment parameters (BACKEND=... AGENT_ID=... or MODEL_ID=... JWT_ISSUER=... ...) without calling AWS.
deploy-check: $(STAMP)
	$(BIN)/python -m infra.deploy check --stage $(STAGE)

## The chalice deploy path: the data stack (infra/data.json), then chalice deploy. Needs AWS credentials.
deploy: $(STAMP)
	$(BIN)/python -m infra.deploy deploy --stage $(STAGE) $(RUNTIME_ARG)

## Remove what `make deploy` created for $(STAGE): chalice delete, then the data stack.
destroy: $(STAMP)
	$(BIN)/python -m infra.deploy destroy --stage $(STAGE)

## The CloudFormation path's chat page: upload client/web and its config.json to $(STACK_NAME)'s bucket, print its URL.
## (make deploy does this itself.) Needs AWS credentials.
publish-page: $(STAMP)
	$(BIN)/python -m infra.page publish --stack-name $(STACK_NAME)

## Before `aws cloudformation delete-stack` of $(STACK_NAME): empty the page's bucket, which CloudFormation cannot delete otherwise.
empty-page: $(STAMP)
	$(BIN)/python -m infra.page empty --stack-name $(STACK_NAME)
