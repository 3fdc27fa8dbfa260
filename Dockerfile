# One image for the api, worker and publisher processes.
FROM python:3.11-slim
WORKDIR /app
RUN pip install --no-cache-dir --upgrade pip
COPY pyproject.toml README.md ./
COPY dialler ./dialler
COPY workflows ./workflows
COPY activities ./activities
COPY api ./api
COPY web ./web
COPY workers ./workers
COPY devstack ./devstack
RUN pip install --no-cache-dir .
RUN useradd --create-home dialler
USER dialler
EXPOSE 8000
CMD ["python", "-m", "api"]
