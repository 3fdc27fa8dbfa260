# One image for the api, worker and publisher processes.
FROM python:3.11-slim
WORKDIR /app
# The locked versions first (a layer that changes only with the lock), then our code without deps.
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY dialler ./dialler
COPY workflows ./workflows
COPY activities ./activities
COPY api ./api
COPY web ./web
COPY workers ./workers
COPY devstack ./devstack
RUN pip install --no-cache-dir --no-deps .
RUN useradd --create-home dialler
USER dialler
EXPOSE 8000
CMD ["python", "-m", "api"]
