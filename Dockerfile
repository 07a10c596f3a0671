# mxscan (and the test world's Python parts: testbed) in one image.
#
#   docker build -t mxscan:local .
#   docker run --rm --network host -v "$PWD:/data" mxscan:local scan /data/domains.txt --out /data/results.ndjson \
#       --resolver 127.0.0.1:53 --ehlo-name scanner.example.org
#
# docker-compose.yml uses it for the `world` (prepare), `mail` (the built-in SMTP fleet) and
# `mxscan` services.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only what the package holds (pyproject's packages.find), so the build context's run/ and
# .venv/ never enter a layer.
COPY pyproject.toml README.md ./
COPY engine/ engine/
COPY probes/ probes/
COPY report/ report/
COPY testbed/ testbed/
COPY mxscan/ mxscan/
COPY scaleout/ scaleout/
RUN pip install . && rm -rf /src/build
WORKDIR /data

ENTRYPOINT ["mxscan"]
CMD ["--help"]
