/** deploy/k8s/s3-gateway.yaml: valid Kubernetes objects (kubernetes-models, unknown fields refused) that run the standalone gateway. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { manifestProblems, type Manifest } from '../../controller/kubernetes/index.ts';

describe('s3/manifest', () => {
  it('s3/manifest - the gateway Deployment and Service validate and run controller/s3/main.ts with a mounted credentials Secret', () => {
    const objs = parseAllDocuments(readFileSync(new URL('../../deploy/k8s/s3-gateway.yaml', import.meta.url), 'utf8')).map((d) => d.toJS() as Manifest);
    expect(objs.map((o) => o.kind)).toEqual(['Deployment', 'Service']);
    for (const o of objs) expect(manifestProblems(o), o.kind).toEqual([]);
    const c = (objs[0] as unknown as { spec: { template: { spec: { containers: { command: string[]; env: { name: string; value: string }[] }[] } } } }).spec.template.spec.containers[0]!;
    expect(c.command).toContain('controller/s3/main.ts');
    expect(c.env.find((e) => e.name === 'SLUICE_S3_CREDENTIALS_FILE')?.value).toBe('/etc/sluice-s3/credentials.yaml');
  });
});
