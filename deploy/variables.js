'use strict';
/**
 * Values that serverless.yml derives instead of restating: `${file(./deploy/variables.js):NAME}`.
 *
 * Each export is a Serverless Framework v3 variable resolver, called only when
 * serverless.yml names it. They exist so that a number is stated once (the
 * visibility timeout is derived from the function timeout), so that a missing
 * deployment setting fails the package with a message naming the parameter,
 * and so that secrets can come from a plain --param or from SSM without
 * editing the file.
 */
const { spawnSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

/** The secrets the function reads (SPEC section 7); each may come from SSM instead of a plain --param. */
const SECRETS = [
  'MONGODB_URI',
  'MONGODB_RSKYCLUSTER_DATABASE_USER_PASSWORD',
  'MONGODB_RSKYCLUSTER_DATA_API_KEY',
];
const SSM_SUFFIX = '_SSM_PARAMETER';

async function param(resolveVariable, name) {
  const value = await resolveVariable(`param:${name}, null`);
  return value === null || value === undefined || String(value).trim() === '' ? null : String(value).trim();
}

/** A custom.queue value as a number: --param values arrive as strings, CloudFormation wants integers. */
function wholeNumber(value, name, maximum = Infinity) {
  const number = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  if (!Number.isInteger(number) || number < 1 || number > maximum) {
    const range = maximum === Infinity ? 'of at least 1' : `from 1 to ${maximum}`;
    throw new Error(`custom.queue.${name} must be a whole number ${range}, got ${JSON.stringify(value)}`);
  }
  return number;
}

/** The redrive count as an integer from 1 to 1000 (SQS's range); AWS advises at least 5. */
async function maxReceiveCount({ resolveConfigurationProperty }) {
  return wholeNumber(await resolveConfigurationProperty(['custom', 'queue', 'maxReceiveCount']), 'maxReceiveCount', 1000);
}

/**
 * The request queue's visibility timeout: factor x function timeout, both read from custom.queue,
 * so that AWS's rule (visibility >= 6 x timeout) holds whatever TIMEOUT is deployed.
 */
async function visibilityTimeoutSeconds({ resolveConfigurationProperty }) {
  const timeout = wholeNumber(
    await resolveConfigurationProperty(['custom', 'queue', 'functionTimeoutSeconds']),
    'functionTimeoutSeconds'
  );
  const factor = wholeNumber(
    await resolveConfigurationProperty(['custom', 'queue', 'visibilityTimeoutFactor']),
    'visibilityTimeoutFactor'
  );
  const seconds = timeout * factor;
  if (seconds > 43200) {
    throw new Error(`visibility timeout ${factor} x ${timeout} s exceeds SQS's maximum of 43200 s: lower TIMEOUT`);
  }
  return seconds;
}

/**
 * The function's VPC: SECURITY_GROUP_IDS and SUBNET_IDS (comma-separated) are required together,
 * unless VPC_ENABLED=false says on purpose that the function runs outside any VPC.
 * Returns null (no VPC) only in that explicit case.
 */
async function vpc({ resolveVariable }) {
  const enabled = (await param(resolveVariable, 'VPC_ENABLED')) || 'true';
  if (!['true', 'false'].includes(enabled.toLowerCase())) {
    throw new Error(`--param VPC_ENABLED must be true or false, got ${JSON.stringify(enabled)}`);
  }
  const groups = await param(resolveVariable, 'SECURITY_GROUP_IDS');
  const subnets = await param(resolveVariable, 'SUBNET_IDS');
  if (enabled.toLowerCase() === 'false') {
    if (groups || subnets) {
      throw new Error('VPC_ENABLED=false contradicts the SECURITY_GROUP_IDS / SUBNET_IDS params given: drop one');
    }
    return null;
  }
  const missing = [!groups && 'SECURITY_GROUP_IDS', !subnets && 'SUBNET_IDS'].filter(Boolean);
  if (missing.length) {
    throw new Error(
      `the function runs in a VPC: pass --param="${missing[0]}=..." (comma-separated ids)` +
        `${missing.length > 1 ? ` and --param="${missing[1]}=..."` : ''},` +
        ' or --param="VPC_ENABLED=false" to deploy it outside any VPC'
    );
  }
  const split = (text) => text.split(',').map((id) => id.trim()).filter(Boolean);
  return { securityGroupIds: split(groups), subnetIds: split(subnets) };
}

/**
 * The ENI permissions a function in a VPC needs, as an inline statement (none outside a VPC).
 * They replace the managed AWSLambdaVPCAccessExecutionRole, which also grants logs:* on every
 * log group. EC2 supports no resource-level scoping for these actions, hence Resource "*".
 */
async function vpcNetworkStatements(helpers) {
  if (!(await vpc(helpers))) return [];
  return [
    {
      Effect: 'Allow',
      Action: [
        'ec2:CreateNetworkInterface',
        'ec2:DescribeNetworkInterfaces',
        'ec2:DescribeSubnets',
        'ec2:DeleteNetworkInterface',
        'ec2:AssignPrivateIpAddresses',
        'ec2:UnassignPrivateIpAddresses',
      ],
      Resource: '*',
    },
  ];
}

/**
 * Where the DLQ alarm notifies: [ALARM_TOPIC_ARN] when that param is given, else [] (the alarm
 * still changes state and shows in the console, it just notifies no one).
 */
async function alarmActions({ resolveVariable }) {
  const topic = await param(resolveVariable, 'ALARM_TOPIC_ARN');
  if (!topic) return [];
  if (!/^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_.-]+$/.test(topic)) {
    throw new Error(`--param ALARM_TOPIC_ARN must be an SNS topic ARN, got ${JSON.stringify(topic)}`);
  }
  return [topic];
}

/**
 * The secret environment variables. For each NAME: the plain --param NAME when given (which may
 * also be a CloudFormation dynamic reference such as {{resolve:secretsmanager:...}}), else the
 * SSM parameter named by --param NAME_SSM_PARAMETER (decrypted at package time: needs AWS
 * credentials), else '' (unset).
 */
async function secrets({ resolveVariable }) {
  const values = {};
  for (const name of SECRETS) {
    const plain = await param(resolveVariable, name);
    const ssmName = await param(resolveVariable, `${name}${SSM_SUFFIX}`);
    if (plain && ssmName) {
      throw new Error(`pass either --param ${name} or --param ${name}${SSM_SUFFIX}, not both`);
    }
    values[name] = plain || (ssmName ? String(await resolveVariable(`ssm:${ssmName}`)) : '');
  }
  return values;
}

/** True when `file` runs and is CPython 3.12 (a pyenv shim on PATH may name a version it cannot run). */
function isPython312(file) {
  const run = spawnSync(file, ['-c', 'import sys; print(sys.implementation.name, *sys.version_info[:2])'], {
    encoding: 'utf8',
    timeout: 20000,
  });
  return run.status === 0 && run.stdout.trim() === 'cpython 3 12';
}

/**
 * A CPython 3.12 interpreter for pip to build the Lambda's requirements with: $LAMBDA_PYTHON_BIN,
 * else python3.12 on PATH, else the newest pyenv 3.12 (PYENV_ROOT or the user's ~/.pyenv, found
 * from the account, not $HOME, which packaging points at a temporary folder).
 */
async function pythonBin() {
  if (process.env.LAMBDA_PYTHON_BIN) {
    if (!isPython312(process.env.LAMBDA_PYTHON_BIN)) {
      throw new Error(`LAMBDA_PYTHON_BIN=${process.env.LAMBDA_PYTHON_BIN} is not a CPython 3.12 interpreter`);
    }
    return process.env.LAMBDA_PYTHON_BIN;
  }
  const onPath = (process.env.PATH || '')
    .split(path.delimiter)
    .filter(Boolean)
    .map((dir) => path.join(dir, 'python3.12'))
    .find(isPython312);
  if (onPath) return onPath;
  const roots = [process.env.PYENV_ROOT, path.join(os.userInfo().homedir, '.pyenv')].filter(Boolean);
  for (const root of roots) {
    const versions = path.join(root, 'versions');
    if (!fs.existsSync(versions)) continue;
    const found = fs
      .readdirSync(versions)
      .filter((version) => /^3\.12\.\d+$/.test(version))
      .sort((a, b) => Number(b.split('.')[2]) - Number(a.split('.')[2]))
      .map((version) => path.join(versions, version, 'bin', 'python3.12'))
      .find(isPython312);
    if (found) return found;
  }
  // Commands that build no requirements (print, invoke local) need no 3.12: warn, and let a
  // package fail on the plain name, right under this explanation.
  process.stderr.write(
    'deploy/variables.js: no CPython 3.12 found to build the Lambda requirements with:' +
      ' set LAMBDA_PYTHON_BIN, put python3.12 on PATH or install it with pyenv\n'
  );
  return 'python3.12';
}

module.exports = { visibilityTimeoutSeconds, maxReceiveCount, vpc, vpcNetworkStatements, alarmActions, secrets, pythonBin };
