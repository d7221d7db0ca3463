.PHONY: demo test venv lint crds images cluster-up cluster-down bench clean

demo:            ## the main job, end to end (installs everything it needs)
	bash hack/demo.sh

test:            ## every test suite (installs everything it needs)
	bash hack/test.sh

venv:
	bash hack/venv.sh

lint: venv
	.venv/bin/ruff check . && .venv/bin/mypy operator/trainingjob_operator trainer_image/forecast_trainer hack/localcluster

crds: venv       ## regenerate crds/ and docs/api-reference.md from the pydantic API models
	PYTHONPATH=operator .venv/bin/python -m trainingjob_operator.crdgen > crds/trainingjob.yaml
	PYTHONPATH=operator .venv/bin/python -m trainingjob_operator.crdgen trainingschedule > crds/trainingschedule.yaml
	PYTHONPATH=operator .venv/bin/python -m trainingjob_operator.refdoc > docs/api-reference.md

images:          ## build (or reuse) the base, shell, no-op, operator, trainer and PostgreSQL images; last line: their directory
	bash hack/build-images.sh

cluster-up: venv ## start etcd + control plane + the real node (TJO_NODE=none: no node); prints export KUBECONFIG=...
	@[ "$${TJO_NODE:-kubelet}" = none ] || bash hack/node-packages.sh
	@PYTHONPATH=hack .venv/bin/python -m localcluster up

cluster-down:
	@PYTHONPATH=hack .venv/bin/python -m localcluster down

clean:
	rm -rf .venv build *.egg-info .pytest_cache .mypy_cache .ruff_cache
