# Reads settings.ini (nbdev 2 convention) so there is one place for the package's metadata.
from configparser import ConfigParser
import setuptools, shlex

config = ConfigParser(delimiters=['='])
config.read('settings.ini', encoding='utf-8')
cfg = config['DEFAULT']

licenses = {'apache2': ('Apache Software License 2.0', 'OSI Approved :: Apache Software License')}
statuses = ['Planning', 'Pre-Alpha', 'Alpha', 'Beta', 'Production/Stable', 'Mature', 'Inactive']
requirements = shlex.split(cfg.get('requirements', ''))
dev_requirements = shlex.split(cfg.get('dev_requirements', ''))
hf_requirements = shlex.split(cfg.get('hf_requirements', ''))
lic = licenses[cfg['license']]

setuptools.setup(
    name=cfg['lib_name'], version=cfg['version'], license=lic[0],
    classifiers=['Development Status :: ' + statuses[int(cfg['status'])],
                 'Intended Audience :: ' + cfg['audience'].title(),
                 'License :: ' + lic[1], 'Natural Language :: ' + cfg['language'].title(),
                 'Programming Language :: Python :: 3'],
    # eelab.assets (the explorer's shipped checkpoint) is a data-only namespace package: listed as a package,
    # with its files as that package's data (setuptools' supported way; no "absent from packages" warning).
    url=cfg['git_url'], packages=setuptools.find_namespace_packages(include=['eelab', 'eelab.*'],
                                                                   exclude=['*.__pycache__']),
    include_package_data=True, install_requires=requirements,
    package_data={'eelab.assets': ['*.safetensors', '*.json']},
    extras_require={'dev': dev_requirements, 'hf': hf_requirements}, python_requires='>=' + cfg['min_python'],
    long_description=open('README.md', encoding='utf-8').read() if __import__('os').path.exists('README.md') else '',
    long_description_content_type='text/markdown', zip_safe=False,
    description=cfg['description'], author=cfg['author'], author_email=cfg['author_email'],
    keywords=cfg['keywords'],
    entry_points={'console_scripts': shlex.split(cfg.get('console_scripts', '')),
                  'nbdev': [f'{cfg["lib_path"]}={cfg["lib_path"]}._modidx:d']})
