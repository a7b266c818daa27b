# Packaging and deployment (make package, make deploy, make destroy). docs/deploy.md walks through them.
# Uses the Makefile's $(BIN), $(STAMP) and $(STAGE); nothing here needs AWS until `deploy`/`destroy`.

PACKAGE_DIR ?= build/package

.PHONY: package deploy deploy-check destroy

## CloudFormation: $(PACKAGE_DIR)/sam.json, deployment.zip (app code) and layer-deployment.zip (dependencies).
package: $(STAMP)
	$(BIN)/python -m infra.stack package --stage $(STAGE) --out $(PACKAGE_DIR)

## Validate the deployment parameters (BACKEND=... AGENT_ID=... or MODEL_ID=... JWT_ISSUER=... ...) without calling AWS.
deploy-check: $(STAMP)
	$(BIN)/python -m infra.deploy check --stage $(STAGE)

## The chalice deploy path: the data stack (infra/data.json), then chalice deploy. Needs AWS credentials.
deploy: $(STAMP)
	$(BIN)/python -m infra.deploy deploy --stage $(STAGE)

## Remove what `make deploy` created for $(STAGE): chalice delete, then the data stack.
destroy: $(STAMP)
	$(BIN)/python -m infra.deploy destroy --stage $(STAGE)
